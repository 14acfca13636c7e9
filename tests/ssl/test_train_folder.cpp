// `selfsup train`, `eval knn` and `embed` on an image folder as users have them: images of mixed sizes,
// formats and channel counts, one file that is no image and one whose pixels are cut off. Without --strict
// both are skipped with warnings naming them and the count; with --strict each is an error naming it.
#include <doctest/doctest.h>
#include <stb/stb_image_write.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/cli_run.h"
#include "tests/support/trainer_fixture.h"

namespace {

namespace fs = std::filesystem;
using selfsup::test::run_selfsup;

void write_image(const std::string& path, int w, int h, int c, int salt) {
  fs::create_directories(fs::path(path).parent_path());
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * c);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 7 + static_cast<size_t>(salt) * 31) % 256);
  const std::string ext = fs::path(path).extension().string();
  const int ok = ext == ".png"   ? stbi_write_png(path.c_str(), w, h, c, px.data(), w * c)
                 : ext == ".bmp" ? stbi_write_bmp(path.c_str(), w, h, c, px.data())
                                 : stbi_write_jpg(path.c_str(), w, h, c, px.data(), 90);
  REQUIRE(ok != 0);
}

// Two classes of 12 images each (sizes from 9x9 to 70x41, grey, grey+alpha, RGB, RGBA; PNG, JPEG, BMP), then
// "not-an-image.jpg" (text) and "cut.png" (a PNG whose second half is missing): 26 files, 24 readable.
std::string make_folder() {
  const std::string root = selfsup::test::fresh_run_dir("train_folder", "data");
  const char* ext[3] = {".png", ".jpg", ".bmp"};
  for (int i = 0; i < 24; ++i) {
    const int c = i % 3 == 1 ? (i % 2 ? 1 : 3) : (i % 3 == 2 ? 3 : 1 + i % 4);  // PNG 1-4, JPEG 1 or 3, BMP 3
    write_image(root + (i < 12 ? "/ant/" : "/bee/") + std::to_string(i) + ext[i % 3], 9 + (i * 13) % 62,
                9 + (i * 7) % 33, c, i);
  }
  std::ofstream(root + "/bee/not-an-image.jpg") << "a text file with an image's name";
  write_image(root + "/ant/full.png", 40, 30, 3, 99);
  std::ifstream in(root + "/ant/full.png", std::ios::binary);
  std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  fs::remove(root + "/ant/full.png");
  std::ofstream(root + "/ant/cut.png", std::ios::binary) << png.substr(0, png.size() / 2);
  return root;
}

}  // namespace

TEST_CASE("selfsup train/eval/embed on a folder of mixed images: bad files skipped with warnings, or --strict errors") {
  const std::string root = make_folder();
  const std::string out = selfsup::test::fresh_run_dir("train_folder", "run");
  const std::string train = "train --data folder:" + root +
                            " --steps 3 --batch 8 --width 4 --proj-hidden 16 --proj-dim 8 --image-size 16 "
                            "--threads 1 --device cpu --out " + out;
  const auto refused = run_selfsup(train + " --strict");
  CHECK(refused.code != 0);
  CHECK_MESSAGE(refused.out.find("not-an-image.jpg': cannot read the image header") != std::string::npos, refused.out);
  CHECK(refused.out.find("--strict") != std::string::npos);
  CHECK(!fs::exists(out + "/encoder.safetensors"));

  // Without --strict: the text file is skipped when the folder is opened; cut.png when the kNN monitor at
  // the end decodes every image (it may be met by a training batch first).
  fs::remove_all(out);
  const auto ok = run_selfsup(train);
  REQUIRE_MESSAGE(ok.code == 0, ok.out);
  CHECK_MESSAGE(ok.out.find("warning: image folder: skipping '" + root + "/bee/not-an-image.jpg'") != std::string::npos,
                ok.out);
  CHECK(ok.out.find("warning: image folder: skipped 1 of 26 files under '" + root + "'") != std::string::npos);
  CHECK(ok.out.find("warning: image folder: skipping '" + root + "/ant/cut.png'") != std::string::npos);
  CHECK(ok.out.find("1 unreadable when decoded so far") != std::string::npos);
  CHECK(ok.out.find("25 training images") != std::string::npos);
  CHECK(ok.out.find("kNN top-1") != std::string::npos);
  CHECK(fs::exists(out + "/encoder.safetensors"));

  // eval --strict: the text file is an error when the folder is opened; without it, cut.png (whose header
  // reads and whose pixels do not) is one when the features are extracted.
  const auto strict_eval = run_selfsup("eval knn --checkpoint " + out + " --k 3 --strict");
  CHECK(strict_eval.code != 0);
  CHECK_MESSAGE(strict_eval.out.find("not-an-image.jpg") != std::string::npos, strict_eval.out);
  fs::rename(root + "/bee/not-an-image.jpg", root + "/not-an-image.jpg");
  const auto strict_decode = run_selfsup("eval knn --checkpoint " + out + " --k 3 --strict");
  CHECK(strict_decode.code != 0);
  CHECK_MESSAGE(strict_decode.out.find("image folder: '" + root + "/ant/cut.png': ") != std::string::npos,
                strict_decode.out);
  fs::rename(root + "/not-an-image.jpg", root + "/bee/not-an-image.jpg");
  const auto eval = run_selfsup("eval knn --checkpoint " + out + " --k 3");
  CHECK_MESSAGE(eval.code == 0, eval.out);
  CHECK(eval.out.find("kNN (k=3") != std::string::npos);
  const auto embed = run_selfsup("embed --checkpoint " + out + " --data folder:" + root + " --out " + out + "/f.npy");
  REQUIRE_MESSAGE(embed.code == 0, embed.out);
  // every image the folder lists, cut.png's place taken by the next readable one; width 4: 32 features
  CHECK_MESSAGE(embed.out.find("embed: 25 x 32 features of folder:" + root) != std::string::npos, embed.out);
  CHECK(fs::file_size(out + "/f.npy") == 128 + 25 * 32 * 4);
  fs::remove_all(out);
  fs::remove_all(root);
}
