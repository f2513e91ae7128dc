// libFuzzer target: any byte string must either parse as GGUF or throw bitnet::Error. On success,
// every metadata value is printed and every tensor's bytes are read, so an out-of-bounds tensor
// range would trip AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Copy into an exactly sized buffer so reads past the end are caught.
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[size ? size : 1]);
  for (size_t i = 0; i < size; ++i) buf[i] = data[i];
  try {
    const bitnet::GgufFile f = bitnet::GgufFile::parse(buf, buf.get(), size, "fuzz.gguf");
    size_t sink = 0;
    for (const auto& [k, v] : f.metadata()) sink += v.to_string().size() + v.size();
    for (const auto& t : f.tensors()) {
      const bitnet::Tensor x = f.tensor(t);
      if (x.nbytes() > 0) sink += x.data()[0] + x.data()[x.nbytes() - 1];
    }
    volatile size_t keep = sink;
    (void)keep;
  } catch (const bitnet::Error&) {
  }
  return 0;
}
