# libFuzzer targets: every tests/fuzz/<name>_fuzzer.cpp becomes the executable <name>_fuzzer.
# Its seed corpus is tests/fuzz/corpus/<name>/ (scripts/run.sh copies it to a temporary
# directory before fuzzing, so the repository is never modified), and an optional libFuzzer
# dictionary is tests/fuzz/<name>.dict.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(WARNING "REDISKIT_BUILD_FUZZERS needs Clang (libFuzzer); compiler is "
                  "${CMAKE_CXX_COMPILER_ID}: no fuzzer is built. Use the 'fuzz' preset.")
  return()
endif()

file(GLOB REDISKIT_FUZZER_SOURCES CONFIGURE_DEPENDS
     "${PROJECT_SOURCE_DIR}/tests/fuzz/*_fuzzer.cpp")

# -fno-sanitize=function: clang 14's function sanitizer cannot compile coroutine code
# ("Cannot represent a difference across sections", llvm/llvm-project#49689).
set(REDISKIT_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                        -fno-sanitize=function -fno-omit-frame-pointer)
set(REDISKIT_FUZZERS "")
foreach(src IN LISTS REDISKIT_FUZZER_SOURCES)
  get_filename_component(name "${src}" NAME_WE)
  add_executable(${name} "${src}")
  target_link_libraries(${name} PRIVATE rediskit::rediskit rediskit_warnings)
  target_compile_options(${name} PRIVATE ${REDISKIT_FUZZ_FLAGS})
  target_link_options(${name} PRIVATE ${REDISKIT_FUZZ_FLAGS})
  list(APPEND REDISKIT_FUZZERS ${name})
endforeach()

# The list of fuzzers, for scripts/run.sh (one name per line; empty when there is none).
list(JOIN REDISKIT_FUZZERS "\n" _rk_fuzzer_lines)
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/fuzzers.txt" CONTENT "${_rk_fuzzer_lines}\n")
message(STATUS "rediskit fuzzers: ${REDISKIT_FUZZERS}")
