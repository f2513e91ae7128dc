#include "core/read_file.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"

namespace bitnet {

std::string read_file(const std::string& path, const char* what) {
  const std::string of = what ? std::string(" (") + what + ")" : std::string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("cannot read '{}'{}: it is a directory", path, of);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read '{}'{}: no such file, or no permission", path, of);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("cannot read '{}'{}: read error", path, of);
  return std::move(ss).str();
}

}  // namespace bitnet
