# Warnings are errors: a warning in numeric code is usually a bug (sign, width, aliasing).
# Host-compiler flags apply to C and C++ only; CUDA files get theirs in src/cuda/CMakeLists.txt.
set(C_CXX "$<COMPILE_LANGUAGE:C,CXX>")
add_compile_options("$<${C_CXX}:-Wall;-Wextra;-Werror;-Wno-unused-parameter>")
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  add_compile_options("$<${C_CXX}:-O2>")
endif()
add_compile_options("$<${C_CXX}:-g1;-fno-math-errno>")

if(BITNET_SANITIZE)
  add_compile_options("$<${C_CXX}:-fsanitize=address,undefined;-fno-sanitize-recover=all;-fno-omit-frame-pointer>")
  add_link_options(-fsanitize=address,undefined)
endif()
if(BITNET_FUZZ)
  add_compile_options("$<${C_CXX}:-fsanitize=fuzzer-no-link,address,undefined;-fno-omit-frame-pointer>")
  add_link_options(-fsanitize=address,undefined)
endif()

# ISA flags for kernel files only (the rest of the binary runs on any x86-64 / armv8-a).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(BITNET_X86 ON)
  set(BITNET_FLAGS_AVX2 -mavx2 -mfma -mf16c -mbmi2)
  set(BITNET_FLAGS_AVXVNNI -mavx2 -mfma -mf16c -mavxvnni)
  # GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on _mm512_undefined_* (GCC bug 105593).
  set(BITNET_NO_HDR_WARN -Wno-uninitialized)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")  # clang has no -Wmaybe-uninitialized
    list(APPEND BITNET_NO_HDR_WARN -Wno-maybe-uninitialized)
  endif()
  # Register-tiled kernels keep up to 24 zmm accumulators in an array; let GCC scalarize it.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    set(BITNET_SRA --param=sra-max-scalarization-size-Ospeed=4096)
  endif()
  set(BITNET_FLAGS_AVX512 ${BITNET_NO_HDR_WARN} ${BITNET_SRA} -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c -mbmi2)
  set(BITNET_FLAGS_AVX512GFNI ${BITNET_FLAGS_AVX512} -mgfni)
  set(BITNET_FLAGS_AMX ${BITNET_NO_HDR_WARN} -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512vbmi -mamx-tile -mamx-int8 -mfma -mf16c)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BITNET_ARM ON)
  set(BITNET_FLAGS_NEON -march=armv8.2-a+dotprod)
endif()

function(bitnet_isa_sources isa)
  set(flags ${BITNET_FLAGS_${isa}})
  foreach(src ${ARGN})
    get_filename_component(abs ${src} ABSOLUTE)
    set_source_files_properties(${abs} TARGET_DIRECTORY bitnet_lib PROPERTIES COMPILE_OPTIONS "${flags}")
  endforeach()
endfunction()
