# Sourced on the GPU machine by cuda-device.sh and train-model.sh: $OUT exists, and the carried
# binaries find the carried libraries (.device/lib) and that machine's cuBLASLt (too large to
# carry; the backend loads it on first use).
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
lt=$(find / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -1 || true)
export LD_LIBRARY_PATH="$PWD/.device/lib${lt:+:$(dirname "$lt")}"
