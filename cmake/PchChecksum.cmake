# cmake -D OUT=<pch>.sum -D SOURCE_DIR=<dir> -D "COMMAND=<compiler;flags;header>" -P PchChecksum.cmake
#
# Writes OUT, the checksum ccache hashes in place of a precompiled header's bytes
# (option pch_external_checksum, CCACHE_PCH_EXTSUM=1): a SHA-256 over the compiler's identity, the flags, and
# the contents of every file the header includes (COMMAND run with -M lists them). Paths under
# SOURCE_DIR count relative to it, so two clones at different paths give the same checksum
# for the same contents, while a clang PCH (which records absolute paths) never has the same
# bytes in two clones. OUT is rewritten only when the checksum changes.
cmake_minimum_required(VERSION 3.25)
foreach(v OUT SOURCE_DIR COMMAND)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "PchChecksum.cmake: -D ${v}=... is required")
  endif()
endforeach()

list(GET COMMAND 0 compiler)
execute_process(COMMAND ${compiler} --version OUTPUT_VARIABLE identity RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "PchChecksum.cmake: `${compiler} --version` failed (${rc})")
endif()
execute_process(COMMAND ${COMMAND} -M OUTPUT_VARIABLE deps ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "PchChecksum.cmake: listing the header's includes failed (${rc}):\n${err}")
endif()

string(REPLACE "${SOURCE_DIR}" "<src>" flags "${COMMAND}")
set(text "${identity}\n${flags}\n")
string(REGEX REPLACE "\\\\\n" " " deps "${deps}")   # make's line continuations
string(REGEX REPLACE "^[^:]*:" "" deps "${deps}")   # the target name
separate_arguments(deps UNIX_COMMAND "${deps}")
foreach(file IN LISTS deps)
  file(SHA256 "${file}" hash)
  file(RELATIVE_PATH rel "${SOURCE_DIR}" "${file}")
  if(rel MATCHES "^\\.\\./")
    set(rel "${file}")  # outside the clone (system headers): the path itself is stable
  endif()
  string(APPEND text "${rel} ${hash}\n")
endforeach()

string(SHA256 sum "${text}")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL "${sum}\n")
    return()
  endif()
endif()
file(WRITE "${OUT}" "${sum}\n")
