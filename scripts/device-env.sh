# Sourced on the GPU machine by cuda-device.sh and train-model.sh: $OUT exists, and the carried
# binaries find the carried libraries (.device/lib) and that machine's cuBLASLt and NCCL (too
# large to carry; the backend loads them on first use).
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
lt=$(find / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -1 || true)
nccl=$(find / -xdev -name 'libnccl.so.2*' 2>/dev/null | head -1 || true)
export LD_LIBRARY_PATH="$PWD/.device/lib${lt:+:$(dirname "$lt")}${nccl:+:$(dirname "$nccl")}"
export NCCL_NVLS_ENABLE=0  # the GPU machines require NVLink multicast off
