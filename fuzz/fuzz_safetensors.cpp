// libFuzzer target: any byte string must either parse as safetensors or throw bitnet::Error. On
// success every tensor's first and last byte is read, so a bad range trips AddressSanitizer.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto buf = std::shared_ptr<uint8_t[]>(new uint8_t[size ? size : 1]);
  for (size_t i = 0; i < size; ++i) buf[i] = data[i];
  try {
    const bitnet::SafetensorsFile f =
        bitnet::SafetensorsFile::parse(buf, buf.get(), size, "fuzz.safetensors");
    size_t sink = f.metadata().size();
    for (const auto& t : f.tensors()) {
      const uint8_t* p = f.tensor_data(t);
      if (t.nbytes() > 0) sink += p[0] + p[t.nbytes() - 1];
      if (bitnet::dtype_from_safetensors(t.dtype)) sink += f.tensor(t).nbytes();
    }
    volatile size_t keep = sink;
    (void)keep;
  } catch (const bitnet::Error&) {
  }
  return 0;
}
