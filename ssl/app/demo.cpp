#include "ssl/app/commands.h"
#include "engine/core/check.h"
namespace selfsup::app {
int cmd_demo(const std::vector<std::string>&) { throw Error("demo: not built yet"); }
}
