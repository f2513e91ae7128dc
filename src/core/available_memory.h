#pragma once
// The memory a new allocation can take before the machine swaps or the kernel kills the process:
// the kernel's estimate (MemAvailable), less where the process's control group (a container's
// limit, cgroup v2 or v1, at any level of its path) leaves less. Large allocations (KV caches) are
// refused by size against it rather than touched page by page until the OOM killer ends the run.
#include <cstddef>
#include <optional>
#include <string_view>

namespace bitnet {

// Bytes available to this process; 0 where nothing could be read (callers then skip the check).
size_t available_memory_bytes();

// The parsers behind it, on the files' text (tested on their own).
// /proc/meminfo: MemAvailable in bytes.
std::optional<size_t> meminfo_available(std::string_view meminfo);
// A cgroup file holding one number (memory.max, memory.current, memory.limit_in_bytes ...);
// nullopt for "max" (no limit) or anything else that is not a number.
std::optional<size_t> cgroup_number(std::string_view text);
// /proc/self/cgroup: the process's path in the v1 memory controller's hierarchy ("4:memory:/a/b")
// or, without one, in the v2 hierarchy ("0::/a/b"); `v2` says which.
std::optional<std::string_view> cgroup_path(std::string_view proc_self_cgroup, bool& v2);

}  // namespace bitnet
