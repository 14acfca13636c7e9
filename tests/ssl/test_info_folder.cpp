// `selfsup info --data folder:PATH` and census_image_folder under it, on a generated folder of PNG and BMP
// files of several sizes and channel counts, with a corrupt and a truncated file among them.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/data/image_folder.h"
#include "tests/support/trainer_fixture.h"

using namespace selfsup;
namespace fs = std::filesystem;

namespace {

void write_image(const std::string& path, int w, int h, int c) {
  fs::create_directories(fs::path(path).parent_path());
  std::vector<uint8_t> px(static_cast<size_t>(w * h * c));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  const bool bmp = path.size() > 4 && path.substr(path.size() - 4) == ".bmp";
  REQUIRE((bmp ? stbi_write_bmp(path.c_str(), w, h, c, px.data())
               : stbi_write_png(path.c_str(), w, h, c, px.data(), w * c)) != 0);
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// cat: three 32x32 RGB, one 17x45 grey; dog: two 64x48 RGBA, one 32x32 BMP, a corrupt and a truncated PNG.
std::string make_folder() {
  const std::string root = test::fresh_run_dir("info", "folder");
  for (const char* f : {"cat/a.png", "cat/b.png", "cat/c.png"}) write_image(root + "/" + f, 32, 32, 3);
  write_image(root + "/cat/grey.png", 17, 45, 1);
  write_image(root + "/dog/x.png", 64, 48, 4);
  write_image(root + "/dog/y.png", 64, 48, 4);
  write_image(root + "/dog/z.bmp", 32, 32, 3);
  write_raw(root + "/dog/broken.png", "this is not a PNG file at all");
  std::ifstream in(root + "/dog/x.png", std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_raw(root + "/dog/cut.png", png.substr(0, 12));  // the signature, not the IHDR with the size
  return root;
}

}  // namespace

TEST_CASE("census_image_folder: counts per class, sizes, channels and unreadable files from the headers") {
  const std::string root = make_folder();
  const ImageFolderCensus c = census_image_folder(root);
  CHECK(c.classes == std::vector<std::string>{"cat", "dog"});
  CHECK(c.per_class == std::vector<int64_t>{4, 3});
  CHECK(c.images() == 7);
  const std::map<std::pair<int, int>, int64_t> sizes = {{{32, 32}, 4}, {{17, 45}, 1}, {{64, 48}, 2}};
  CHECK(c.sizes == sizes);
  const std::map<int, int64_t> channels = {{1, 1}, {3, 4}, {4, 2}};
  CHECK(c.channels == channels);
  REQUIRE(c.unreadable.size() == 2);
  CHECK(c.unreadable[0].find(root + "/dog/broken.png: cannot read the image header") == 0);
  CHECK(c.unreadable[1].find(root + "/dog/cut.png: cannot read the image header") == 0);
  CHECK_THROWS_WITH_AS(census_image_folder(root + "/cat"), doctest::Contains("has no class subdirectories"), Error);
  fs::remove_all(root);
}

TEST_CASE("selfsup info --data folder:PATH prints the census") {
  const std::string root = make_folder();
  const std::string cmd = std::string(SELFSUP_BIN) + " info --data folder:" + root + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), out);
  for (const std::string& line :
       {"folder:   " + root + ": 7 images in 2 classes, 2 unreadable\n", std::string("classes:  cat 4, dog 3\n"),
        std::string("sizes:    3 distinct (width x height); most common: 32x32 (4), 64x48 (2), 17x45 (1)\n"),
        std::string("          short side min 17, median 32, max 48\n"),
        std::string("channels: grey 1 RGB 4 RGBA 2\n"), "unreadable: " + root + "/dog/broken.png: "})
    CHECK_MESSAGE(out.find(line) != std::string::npos, line, "\n", out);
  fs::remove_all(root);
}
