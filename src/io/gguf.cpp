#include "io/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "core/error.h"
#include "core/mapped_file.h"

namespace bitnet {

namespace {

constexpr uint32_t kMaxDims = 4;

// Bytes one element of a metadata type occupies at least (strings: their u64 length).
size_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: case GgufType::STRING: return 8;
    case GgufType::ARRAY: return 12;  // u32 elem type + u64 count
  }
  return 0;
}

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

bool is_unsigned(GgufType t) {
  return t == GgufType::U8 || t == GgufType::U16 || t == GgufType::U32 || t == GgufType::U64;
}
bool is_signed(GgufType t) {
  return t == GgufType::I8 || t == GgufType::I16 || t == GgufType::I32 || t == GgufType::I64;
}
bool is_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// Printable form of a metadata string: control bytes, quotes and backslashes escaped.
std::string escape(std::string_view s, size_t max_chars) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::array<std::string_view, 13> kNames = {
      "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kNames.size() ? kNames[i] : std::string_view("unknown");
}

std::string ggml_type_name(uint32_t t) {
  static constexpr std::array<std::string_view, 40> kNames = {
      "F32",     "F16",    "Q4_0",    "Q4_1",     "Q4_2 (removed)", "Q4_3 (removed)",
      "Q5_0",    "Q5_1",   "Q8_0",    "Q8_1",     "Q2_K",           "Q3_K",
      "Q4_K",    "Q5_K",   "Q6_K",    "Q8_K",     "IQ2_XXS",        "IQ2_XS",
      "IQ3_XXS", "IQ1_S",  "IQ4_NL",  "IQ3_S",    "IQ2_S",          "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",      "F64",            "IQ1_M",
      "BF16",    "Q4_0_4_4 (removed)", "Q4_0_4_8 (removed)", "Q4_0_8_8 (removed)", "TQ1_0",
      "TQ2_0",   "I2_S",   "I8_S",    "TL1",      "TL2"};
  if (t < kNames.size()) return std::string(kNames[t]);
  return fmt::format("type#{}", t);
}

// ---------------------------------------------------------------------------------------------
// GgufValue

size_t GgufValue::size() const {
  if (!is_array()) return 1;
  return std::visit(
      [](const auto& x) -> size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (requires { x.size(); } && !std::is_same_v<T, std::string>) return x.size();
        else return 1;
      },
      v);
}

std::string GgufValue::to_string(size_t max_elems) const {
  const bool f32 = (is_array() ? elem : type) == GgufType::F32;
  auto one = [f32](const auto& x) -> std::string {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, std::string>) return "\"" + escape(x, 200) + "\"";
    else if constexpr (std::is_same_v<T, bool>) return x ? "true" : "false";
    else if constexpr (std::is_same_v<T, double>)
      return f32 ? fmt::format("{}", static_cast<float>(x)) : fmt::format("{}", x);  // shortest
    else return fmt::format("{}", x);
  };
  if (!is_array()) {
    return std::visit(
        [&](const auto& x) -> std::string {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
                        std::is_same_v<T, double> || std::is_same_v<T, bool> ||
                        std::is_same_v<T, std::string>)
            return one(x);
          else
            return "?";
        },
        v);
  }
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<uint64_t>> ||
                      std::is_same_v<T, std::vector<int64_t>> ||
                      std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<bool>> ||
                      std::is_same_v<T, std::vector<std::string>>) {
          std::string s = fmt::format("[{} x {}] [", gguf_type_name(elem), x.size());
          for (size_t i = 0; i < x.size() && i < max_elems; ++i) {
            if (i) s += ", ";
            if constexpr (std::is_same_v<T, std::vector<bool>>) s += x[i] ? "true" : "false";
            else s += one(x[i]);
          }
          if (x.size() > max_elems) s += ", ...";
          return s + "]";
        } else {
          return "?";
        }
      },
      v);
}

// ---------------------------------------------------------------------------------------------
// Reader

struct GgufParser {
  const uint8_t* p;
  size_t size;
  size_t pos = 0;
  const std::string& name;

  size_t left() const { return size - pos; }

  [[noreturn]] void truncated(size_t need, std::string_view what) const {
    fail("{}: truncated at byte offset {}: {} needs {} bytes, {} left", name, pos, what, need,
         left());
  }

  template <typename T>
  T read(std::string_view what) {
    if (left() < sizeof(T)) truncated(sizeof(T), what);
    std::make_unsigned_t<T> x = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      x = static_cast<decltype(x)>(x | static_cast<decltype(x)>(p[pos + i]) << (8 * i));
    pos += sizeof(T);
    return static_cast<T>(x);
  }

  // `what` + `what2` describe the string in error messages (built only on failure).
  std::string read_str(std::string_view what, std::string_view what2 = {}) {
    const size_t at = pos;
    if (left() < 8) truncated(8, fmt::format("{}{}", what, what2));
    const auto len = read<uint64_t>(what);
    if (len > left())
      fail("{}: {}{} at byte offset {} has length {} but only {} bytes remain", name, what, what2,
           at, len, left());
    std::string s(reinterpret_cast<const char*>(p + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
    return s;
  }

  // One scalar of type t, widened into the variant alternative for its kind.
  template <typename Fn>
  void read_scalar(GgufType t, const std::string& key, Fn&& put) {
    switch (t) {
      case GgufType::U8: put(uint64_t{read<uint8_t>(key)}); break;
      case GgufType::I8: put(int64_t{read<int8_t>(key)}); break;
      case GgufType::U16: put(uint64_t{read<uint16_t>(key)}); break;
      case GgufType::I16: put(int64_t{read<int16_t>(key)}); break;
      case GgufType::U32: put(uint64_t{read<uint32_t>(key)}); break;
      case GgufType::I32: put(int64_t{read<int32_t>(key)}); break;
      case GgufType::U64: put(read<uint64_t>(key)); break;
      case GgufType::I64: put(read<int64_t>(key)); break;
      case GgufType::F32: put(double{std::bit_cast<float>(read<uint32_t>(key))}); break;
      case GgufType::F64: put(std::bit_cast<double>(read<uint64_t>(key))); break;
      case GgufType::BOOL: {
        const size_t at = pos;
        const auto b = read<uint8_t>(key);
        if (b > 1) fail("{}: key '{}': bool value {} at byte offset {} (must be 0 or 1)", name, key, b, at);
        put(b == 1);
        break;
      }
      case GgufType::STRING: put(read_str("string value of key ", key)); break;
      case GgufType::ARRAY: BN_CHECK(false, "arrays are not scalars"); break;
    }
  }

  GgufValue read_value(const std::string& key) {
    const size_t type_at = pos;
    const auto t = read<uint32_t>("value type of key '" + key + "'");
    if (!known_type(t))
      fail("{}: key '{}' has unknown value type {} at byte offset {}", name, key, t, type_at);
    GgufValue v;
    v.type = static_cast<GgufType>(t);
    if (v.type != GgufType::ARRAY) {
      read_scalar(v.type, key, [&](auto x) { v.v = std::move(x); });
      return v;
    }
    const size_t elem_at = pos;
    const auto e = read<uint32_t>("array element type of key '" + key + "'");
    if (!known_type(e))
      fail("{}: key '{}': array of unknown element type {} at byte offset {}", name, key, e, elem_at);
    v.elem = static_cast<GgufType>(e);
    if (v.elem == GgufType::ARRAY)
      fail("{}: key '{}': nested arrays are not supported (byte offset {})", name, key, elem_at);
    const size_t count_at = pos;
    const auto count = read<uint64_t>("array length of key '" + key + "'");
    // Bound the count by what the remaining bytes can hold before allocating anything.
    if (count > left() / min_value_bytes(v.elem))
      fail("{}: key '{}': array of {} {} at byte offset {} does not fit in the {} bytes left", name,
           key, count, gguf_type_name(v.elem), count_at, left());
    const auto n = static_cast<size_t>(count);
    auto fill = [&](auto vec) {
      vec.reserve(n);
      for (size_t i = 0; i < n; ++i)
        read_scalar(v.elem, key, [&](auto x) {
          if constexpr (std::is_same_v<decltype(x), typename std::decay_t<decltype(vec)>::value_type>)
            vec.push_back(std::move(x));
        });
      v.v = std::move(vec);
    };
    if (is_unsigned(v.elem)) fill(std::vector<uint64_t>{});
    else if (is_signed(v.elem)) fill(std::vector<int64_t>{});
    else if (is_float(v.elem)) fill(std::vector<double>{});
    else if (v.elem == GgufType::BOOL) fill(std::vector<bool>{});
    else fill(std::vector<std::string>{});
    return v;
  }
};

GgufFile GgufFile::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  const uint8_t* d = mf->data();
  const size_t n = mf->size();
  const MappedFile* raw = mf.get();
  GgufFile f = parse(std::move(mf), d, n, path);
  f.mapped_ = raw;
  return f;
}

void GgufFile::release_tensor(const GgufTensorInfo& info) const {
  if (mapped_) mapped_->release(tensor_data(info), info.nbytes);
}

void GgufFile::release_bytes(const uint8_t* p, size_t n) const {
  if (mapped_) mapped_->release(p, n);
}

GgufFile GgufFile::parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                         std::string name) {
  GgufFile f;
  f.name_ = std::move(name);
  f.owner_ = std::move(owner);
  f.data_ = data;
  f.size_ = size;
  const std::string& fn = f.name_;
  GgufParser r{data, size, 0, fn};

  if (size < 4) r.truncated(4, "magic");
  if (std::memcmp(data, "GGUF", 4) != 0)
    fail("{}: not a GGUF file (magic {:02x} {:02x} {:02x} {:02x}, expected \"GGUF\")", fn, data[0],
         data[1], data[2], data[3]);
  (void)r.read<uint32_t>("magic");
  f.version_ = r.read<uint32_t>("version");
  if (f.version_ == 1) fail("{}: GGUF version 1 is not supported (only versions 2 and 3)", fn);
  if (f.version_ != 2 && f.version_ != 3) {
    if (f.version_ >= 0x10000)
      fail("{}: GGUF version {:#x} is not supported (a big-endian file? only little-endian "
           "versions 2 and 3 are)", fn, f.version_);
    fail("{}: GGUF version {} is not supported (only versions 2 and 3)", fn, f.version_);
  }
  const auto n_tensors = r.read<uint64_t>("tensor count");
  const auto n_kv = r.read<uint64_t>("metadata count");
  // Each metadata entry takes at least 13 bytes (key length, type, 1-byte value) and each tensor
  // info at least 24 (name length, n_dims, type, offset).
  if (n_kv > r.left() / 13)
    fail("{}: metadata count {} (byte offset 16) cannot fit in the {} bytes left", fn, n_kv, r.left());
  if (n_tensors > r.left() / 24 || n_tensors * 24 + n_kv * 13 > r.left())
    fail("{}: tensor count {} (byte offset 8) cannot fit in the {} bytes left", fn, n_tensors,
         r.left());

  f.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    const size_t at = r.pos;
    std::string key = r.read_str(fmt::format("metadata key #{}", i));
    if (f.kv_index_.count(key))
      fail("{}: duplicate metadata key '{}' at byte offset {}", fn, key, at);
    GgufValue v = r.read_value(key);
    f.kv_index_.emplace(key, f.kv_.size());
    f.kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (!is_unsigned(a->type) && !is_signed(a->type))
      fail("{}: general.alignment has type {}, expected u32", fn, gguf_type_name(a->type));
    const uint64_t al = is_unsigned(a->type) ? std::get<uint64_t>(a->v)
                                             : static_cast<uint64_t>(std::get<int64_t>(a->v));
    if (al == 0 || !std::has_single_bit(al) || al > (1u << 30))
      fail("{}: general.alignment {} is not a power of two in [1, 2^30]", fn,
           is_unsigned(a->type) ? fmt::format("{}", al)
                                : fmt::format("{}", std::get<int64_t>(a->v)));
    f.alignment_ = static_cast<uint32_t>(al);
  }

  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    const size_t at = r.pos;
    t.name = r.read_str(fmt::format("name of tensor #{}", i));
    if (f.tensor_index_.count(t.name))
      fail("{}: duplicate tensor name '{}' at byte offset {}", fn, t.name, at);
    const size_t dims_at = r.pos;
    const auto n_dims = r.read<uint32_t>("n_dims of tensor '" + t.name + "'");
    if (n_dims > kMaxDims)
      fail("{}: tensor '{}' has {} dimensions at byte offset {} (at most {})", fn, t.name, n_dims,
           dims_at, kMaxDims);
    t.shape.resize(n_dims);
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const size_t ne_at = r.pos;
      const auto ne = r.read<uint64_t>("dimension of tensor '" + t.name + "'");
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("{}: tensor '{}': dimension {} = {} at byte offset {} is out of range", fn, t.name, d,
             ne, ne_at);
      t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne);
    }
    // The element count must not overflow in any order of multiplication Tensor uses (outermost
    // first); zero dimensions make it 0 but a later one may not overflow before that.
    for (int64_t d : t.shape)
      if (__builtin_mul_overflow(numel, d, &numel))
        fail("{}: tensor '{}': shape {} overflows", fn, t.name, shape_str(t.shape));
    const size_t type_at = r.pos;
    t.ggml_type = r.read<uint32_t>("type of tensor '" + t.name + "'");
    const auto dt = dtype_from_ggml(t.ggml_type);
    if (!dt)
      fail("{}: tensor '{}' has unsupported ggml type {} ({}) at byte offset {}", fn, t.name,
           t.ggml_type, ggml_type_name(t.ggml_type), type_at);
    t.dtype = *dt;
    const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
    const auto& info = dtype_info(t.dtype);
    if (cols % info.block_elems != 0)
      fail("{}: tensor '{}': row of {} elements is not a whole number of {} blocks ({} each)", fn,
           t.name, cols, ggml_type_name(t.ggml_type), info.block_elems);
    try {
      t.nbytes = Tensor::nbytes(t.dtype, t.shape);
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", fn, t.name, e.what());
    }
    const size_t off_at = r.pos;
    t.offset = r.read<uint64_t>("offset of tensor '" + t.name + "'");
    if (t.offset % f.alignment_ != 0)
      fail("{}: tensor '{}': data offset {} (at byte offset {}) is not a multiple of the "
           "alignment {}", fn, t.name, t.offset, off_at, f.alignment_);
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (pos <= size, so no overflow).
  f.data_offset_ = (r.pos + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (!f.tensors_.empty() && f.data_offset_ > size)
    fail("{}: data section (byte offset {}) starts past the end of the file ({} bytes)", fn,
         f.data_offset_, size);
  const size_t avail = f.tensors_.empty() ? 0 : size - f.data_offset_;
  for (const auto& t : f.tensors_) {
    if (t.offset > avail || t.nbytes > avail - t.offset)
      fail("{}: tensor '{}': {} bytes at data offset {} (data section at byte offset {}) lie "
           "past the end of the file ({} bytes)", fn, t.name, t.nbytes, t.offset, f.data_offset_,
           size);
  }
  // No two tensors may share bytes.
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& a = f.tensors_[order[i - 1]];
    const auto& b = f.tensors_[order[i]];
    if (a.offset + a.nbytes > b.offset)
      fail("{}: tensors '{}' (data [{}, {})) and '{}' (from {}) overlap", fn, a.name, a.offset,
           a.offset + a.nbytes, b.name, b.offset);
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {

const GgufValue& need(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  if (!v) fail("{}: metadata key '{}' is missing", f.name(), key);
  return *v;
}

template <typename T>
T get_int(const GgufFile& f, std::string_view key) {
  const GgufValue& v = need(f, key);
  if (is_unsigned(v.type)) {
    const uint64_t x = std::get<uint64_t>(v.v);
    if (std::in_range<T>(x)) return static_cast<T>(x);
    fail("{}: metadata key '{}' = {} is out of range", f.name(), key, x);
  }
  if (is_signed(v.type)) {
    const int64_t x = std::get<int64_t>(v.v);
    if (std::in_range<T>(x)) return static_cast<T>(x);
    fail("{}: metadata key '{}' = {} is out of range", f.name(), key, x);
  }
  fail("{}: metadata key '{}' has type {}, expected an integer", f.name(), key,
       gguf_type_name(v.type));
}

double get_float(const GgufFile& f, std::string_view key) {
  const GgufValue& v = need(f, key);
  if (!is_float(v.type))
    fail("{}: metadata key '{}' has type {}, expected f32 or f64", f.name(), key,
         gguf_type_name(v.type));
  return std::get<double>(v.v);
}

const GgufValue& get_array(const GgufFile& f, std::string_view key) {
  const GgufValue& v = need(f, key);
  if (!v.is_array())
    fail("{}: metadata key '{}' has type {}, expected an array", f.name(), key,
         gguf_type_name(v.type));
  return v;
}

}  // namespace

uint32_t GgufFile::get_u32(std::string_view key) const { return get_int<uint32_t>(*this, key); }
uint32_t GgufFile::get_u32(std::string_view key, uint32_t dflt) const {
  return has(key) ? get_u32(key) : dflt;
}
int32_t GgufFile::get_i32(std::string_view key) const { return get_int<int32_t>(*this, key); }
int32_t GgufFile::get_i32(std::string_view key, int32_t dflt) const {
  return has(key) ? get_i32(key) : dflt;
}
uint64_t GgufFile::get_u64(std::string_view key) const { return get_int<uint64_t>(*this, key); }
int64_t GgufFile::get_i64(std::string_view key) const { return get_int<int64_t>(*this, key); }
float GgufFile::get_f32(std::string_view key) const {
  return static_cast<float>(get_float(*this, key));
}
float GgufFile::get_f32(std::string_view key, float dflt) const {
  return has(key) ? get_f32(key) : dflt;
}
double GgufFile::get_f64(std::string_view key) const { return get_float(*this, key); }

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::BOOL)
    fail("{}: metadata key '{}' has type {}, expected bool", name_, key, gguf_type_name(v.type));
  return std::get<bool>(v.v);
}
bool GgufFile::get_bool(std::string_view key, bool dflt) const {
  return has(key) ? get_bool(key) : dflt;
}

const std::string& GgufFile::get_str(std::string_view key) const {
  const GgufValue& v = need(*this, key);
  if (v.type != GgufType::STRING)
    fail("{}: metadata key '{}' has type {}, expected string", name_, key, gguf_type_name(v.type));
  return std::get<std::string>(v.v);
}
std::string GgufFile::get_str(std::string_view key, const std::string& dflt) const {
  return has(key) ? get_str(key) : dflt;
}

const GgufValue& GgufFile::get_arr(std::string_view key) const { return get_array(*this, key); }

const std::vector<std::string>& GgufFile::get_str_arr(std::string_view key) const {
  const GgufValue& v = get_array(*this, key);
  if (v.elem != GgufType::STRING)
    fail("{}: metadata key '{}' is an array of {}, expected strings", name_, key,
         gguf_type_name(v.elem));
  return std::get<std::vector<std::string>>(v.v);
}

std::vector<int64_t> GgufFile::get_int_arr(std::string_view key) const {
  const GgufValue& v = get_array(*this, key);
  if (is_signed(v.elem)) return std::get<std::vector<int64_t>>(v.v);
  if (!is_unsigned(v.elem))
    fail("{}: metadata key '{}' is an array of {}, expected integers", name_, key,
         gguf_type_name(v.elem));
  const auto& u = std::get<std::vector<uint64_t>>(v.v);
  std::vector<int64_t> out;
  out.reserve(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    if (!std::in_range<int64_t>(u[i]))
      fail("{}: metadata key '{}': element {} = {} is out of range", name_, key, i, u[i]);
    out.push_back(static_cast<int64_t>(u[i]));
  }
  return out;
}

std::vector<float> GgufFile::get_f32_arr(std::string_view key) const {
  const GgufValue& v = get_array(*this, key);
  if (!is_float(v.elem))
    fail("{}: metadata key '{}' is an array of {}, expected f32 or f64", name_, key,
         gguf_type_name(v.elem));
  const auto& d = std::get<std::vector<double>>(v.v);
  std::vector<float> out(d.size());
  for (size_t i = 0; i < d.size(); ++i) out[i] = static_cast<float>(d[i]);
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t) fail("{}: no tensor named '{}'", name_, name);
  return tensor(*t);
}

Tensor GgufFile::tensor(const GgufTensorInfo& t) const {
  return Tensor::borrow(t.dtype, t.shape, tensor_data(t), owner_, t.name);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

struct Out {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T x) {
    auto u = static_cast<std::make_unsigned_t<T>>(x);
    for (size_t i = 0; i < sizeof(T); ++i) b.push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  void str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void pad(size_t align) {
    while (b.size() % align) b.push_back(0);
  }
};

void put_scalar(Out& o, GgufType t, const std::string& key, uint64_t u) {
  auto range = [&](uint64_t max) {
    if (u > max) fail("gguf writer: key '{}': value {} does not fit {}", key, u, gguf_type_name(t));
  };
  switch (t) {
    case GgufType::U8: range(0xFF); o.put<uint8_t>(static_cast<uint8_t>(u)); return;
    case GgufType::U16: range(0xFFFF); o.put<uint16_t>(static_cast<uint16_t>(u)); return;
    case GgufType::U32: range(0xFFFFFFFF); o.put<uint32_t>(static_cast<uint32_t>(u)); return;
    case GgufType::U64: o.put<uint64_t>(u); return;
    default: fail("gguf writer: key '{}': unsigned value for type {}", key, gguf_type_name(t));
  }
}

void put_scalar(Out& o, GgufType t, const std::string& key, int64_t x) {
  auto range = [&](int64_t lo, int64_t hi) {
    if (x < lo || x > hi) fail("gguf writer: key '{}': value {} does not fit {}", key, x, gguf_type_name(t));
  };
  switch (t) {
    case GgufType::I8: range(INT8_MIN, INT8_MAX); o.put<int8_t>(static_cast<int8_t>(x)); return;
    case GgufType::I16: range(INT16_MIN, INT16_MAX); o.put<int16_t>(static_cast<int16_t>(x)); return;
    case GgufType::I32: range(INT32_MIN, INT32_MAX); o.put<int32_t>(static_cast<int32_t>(x)); return;
    case GgufType::I64: o.put<int64_t>(x); return;
    default: fail("gguf writer: key '{}': signed value for type {}", key, gguf_type_name(t));
  }
}

void put_scalar(Out& o, GgufType t, const std::string& key, double x) {
  if (t == GgufType::F32) o.put<uint32_t>(std::bit_cast<uint32_t>(static_cast<float>(x)));
  else if (t == GgufType::F64) o.put<uint64_t>(std::bit_cast<uint64_t>(x));
  else fail("gguf writer: key '{}': float value for type {}", key, gguf_type_name(t));
}

void put_scalar(Out& o, GgufType t, const std::string& key, bool x) {
  if (t != GgufType::BOOL) fail("gguf writer: key '{}': bool value for type {}", key, gguf_type_name(t));
  o.put<uint8_t>(x ? 1 : 0);
}

void put_scalar(Out& o, GgufType t, const std::string& key, const std::string& x) {
  if (t != GgufType::STRING)
    fail("gguf writer: key '{}': string value for type {}", key, gguf_type_name(t));
  o.str(x);
}

void put_value(Out& o, const std::string& key, const GgufValue& v) {
  o.put<uint32_t>(static_cast<uint32_t>(v.type));
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, int64_t> ||
                      std::is_same_v<T, double> || std::is_same_v<T, bool> ||
                      std::is_same_v<T, std::string>) {
          if (v.type == GgufType::ARRAY) fail("gguf writer: key '{}': array without elements", key);
          put_scalar(o, v.type, key, x);
        } else {
          if (v.type != GgufType::ARRAY) fail("gguf writer: key '{}': array value for type {}", key, gguf_type_name(v.type));
          if (v.elem == GgufType::ARRAY) fail("gguf writer: key '{}': nested arrays are not supported", key);
          o.put<uint32_t>(static_cast<uint32_t>(v.elem));
          o.put<uint64_t>(x.size());
          for (size_t i = 0; i < x.size(); ++i) {
            if constexpr (std::is_same_v<T, std::vector<bool>>) put_scalar(o, v.elem, key, bool{x[i]});
            else put_scalar(o, v.elem, key, x[i]);
          }
        }
      },
      v.v);
}

}  // namespace

void GgufWriter::set(std::string key, GgufValue v) {
  for (auto& [k, old] : kv)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv.emplace_back(std::move(key), std::move(v));
}

void GgufWriter::add_tensor(const Tensor& t, std::string name) {
  const auto g = ggml_from_dtype(t.dtype());
  if (!g) fail("gguf writer: tensor '{}': type {} has no GGUF id", name, dtype_name(t.dtype()));
  add_tensor(name.empty() ? t.name() : std::move(name), *g, t.shape(),
             std::vector<uint8_t>(t.data(), t.data() + t.nbytes()));
}

void GgufWriter::add_tensor(std::string name, uint32_t ggml_type, std::vector<int64_t> shape,
                            std::vector<uint8_t> bytes) {
  if (shape.size() > kMaxDims)
    fail("gguf writer: tensor '{}' has {} dimensions (at most {})", name, shape.size(), kMaxDims);
  for (auto d : shape)
    if (d < 0) fail("gguf writer: tensor '{}': negative dimension in {}", name, shape_str(shape));
  if (auto dt = dtype_from_ggml(ggml_type); dt && Tensor::nbytes(*dt, shape) != bytes.size())
    fail("gguf writer: tensor '{}': {} bytes for {} {}, expected {}", name, bytes.size(),
         ggml_type_name(ggml_type), shape_str(shape), Tensor::nbytes(*dt, shape));
  for (const auto& t : tensors)
    if (t.name == name) fail("gguf writer: duplicate tensor name '{}'", name);
  tensors.push_back({std::move(name), ggml_type, std::move(shape), std::move(bytes)});
}

std::vector<uint8_t> GgufWriter::serialize() const {
  if (alignment == 0 || !std::has_single_bit(alignment))
    fail("gguf writer: alignment {} is not a power of two", alignment);
  auto meta = kv;
  bool has_align = false;
  for (const auto& [k, v] : meta) has_align |= k == "general.alignment";
  if (!has_align && alignment != 32) meta.emplace_back("general.alignment", GgufValue::u32(alignment));

  for (size_t i = 0; i < meta.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (meta[i].first == meta[j].first) fail("gguf writer: duplicate metadata key '{}'", meta[i].first);
  Out o;
  o.b.insert(o.b.end(), {'G', 'G', 'U', 'F'});
  o.put<uint32_t>(3);
  o.put<uint64_t>(tensors.size());
  o.put<uint64_t>(meta.size());
  for (const auto& [k, v] : meta) {
    o.str(k);
    put_value(o, k, v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    o.str(t.name);
    o.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) o.put<uint64_t>(static_cast<uint64_t>(t.shape[d]));
    o.put<uint32_t>(t.ggml_type);
    o.put<uint64_t>(offset);
    offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
  }
  o.pad(alignment);
  for (const auto& t : tensors) {
    o.b.insert(o.b.end(), t.bytes.begin(), t.bytes.end());
    o.pad(alignment);
  }
  return o.b;
}

void GgufWriter::write(const std::string& path) const {
  const auto bytes = serialize();
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  if (!fp) fail("cannot create '{}': {}", path, std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), fp) == bytes.size();
  if (std::fclose(fp) != 0 || !ok) fail("cannot write '{}': {}", path, std::strerror(errno));
}

}  // namespace bitnet
