#include "core/available_memory.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <string>

#include "core/read_file.h"

namespace bitnet {
namespace {

std::optional<std::string> read_small(const std::string& path) {
  try {
    return read_file(path);
  } catch (const std::exception&) {
    return std::nullopt;  // a file this kernel or container does not have
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::optional<size_t> parse_size(std::string_view s) {
  size_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The least (limit - usage) over the cgroup's directory and its parents up to the hierarchy's root.
// Inside a container the path names the host's hierarchy and is missing here; the walk then reaches
// the container's own root, whose files hold its limit.
std::optional<size_t> cgroup_room(const std::string& root, std::string_view path, const char* limit_file,
                                  const char* usage_file) {
  std::optional<size_t> room;
  std::string p(path);
  while (true) {
    const std::string dir = root + (p == "/" ? "" : p);
    const auto limit = read_small(dir + "/" + limit_file);
    const auto usage = read_small(dir + "/" + usage_file);
    if (limit && usage) {
      const auto l = cgroup_number(*limit), u = cgroup_number(*usage);
      // v1 writes "no limit" as a number near 2^63: past any machine, so it never binds.
      if (l && u) room = std::min(room.value_or(SIZE_MAX), *l > *u ? *l - *u : 0);
    }
    if (p.empty() || p == "/") break;
    const size_t slash = p.rfind('/');
    p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
  }
  return room;
}

}  // namespace

std::optional<size_t> meminfo_available(std::string_view meminfo) {
  constexpr std::string_view key = "MemAvailable:";
  size_t at = 0;
  while (at < meminfo.size()) {
    const size_t nl = std::min(meminfo.find('\n', at), meminfo.size());
    std::string_view line = meminfo.substr(at, nl - at);
    at = nl + 1;
    if (!line.starts_with(key)) continue;
    line = trim(line.substr(key.size()));
    if (!line.ends_with("kB")) return std::nullopt;
    const auto kb = parse_size(trim(line.substr(0, line.size() - 2)));
    if (!kb || *kb > SIZE_MAX / 1024) return std::nullopt;
    return *kb * 1024;
  }
  return std::nullopt;
}

std::optional<size_t> cgroup_number(std::string_view text) {
  return parse_size(trim(text));
}

std::optional<std::string_view> cgroup_path(std::string_view proc_self_cgroup, bool& v2) {
  std::optional<std::string_view> v1_path, v2_path;
  size_t at = 0;
  while (at < proc_self_cgroup.size()) {
    const size_t nl = std::min(proc_self_cgroup.find('\n', at), proc_self_cgroup.size());
    const std::string_view line = proc_self_cgroup.substr(at, nl - at);
    at = nl + 1;
    const size_t c1 = line.find(':'), c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, c1), ctrl = line.substr(c1 + 1, c2 - c1 - 1),
                           path = line.substr(c2 + 1);
    if (path.empty() || path.front() != '/') continue;
    if (id == "0" && ctrl.empty()) v2_path = path;
    // v1: the controller list is comma-separated ("memory" or "cpu,memory").
    for (size_t s = 0; s <= ctrl.size();) {
      const size_t e = std::min(ctrl.find(',', s), ctrl.size());
      if (ctrl.substr(s, e - s) == "memory") v1_path = path;
      s = e + 1;
    }
  }
  // A hybrid system lists both; its memory controller is then the v1 one.
  v2 = !v1_path.has_value();
  return v1_path ? v1_path : v2_path;
}

size_t available_memory_bytes() {
  std::optional<size_t> have;
  if (const auto m = read_small("/proc/meminfo")) have = meminfo_available(*m);
  if (const auto cg = read_small("/proc/self/cgroup")) {
    bool v2 = false;
    std::optional<size_t> room;
    if (const auto p = cgroup_path(*cg, v2)) {
      room = v2 ? cgroup_room("/sys/fs/cgroup", *p, "memory.max", "memory.current")
                : cgroup_room("/sys/fs/cgroup/memory", *p, "memory.limit_in_bytes", "memory.usage_in_bytes");
    }
    if (room) have = std::min(have.value_or(SIZE_MAX), *room);
  }
  return have.value_or(0);
}

}  // namespace bitnet
