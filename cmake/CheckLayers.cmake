# cmake -D INCLUDE_DIR=<repo>/include -P CheckLayers.cmake
# The layering rule: only the headers that name MemoryBackend may include the in-memory engine
# (rediskit/backend/memory_backend.hpp, rediskit/backend/detail/memory/*). Services, commands,
# script.hpp, codecs, concepts and RedisBackend depend on concepts and commands only, so that a
# program using CacheService<RedisBackend> never compiles the engine. Fails, naming the include
# chain, when any other header reaches the engine through its #include <rediskit/...> lines.
# Public headers include each other only as <rediskit/...> (a quoted include fails the check,
# so that the walk below sees every edge).
cmake_minimum_required(VERSION 3.21)

# The headers allowed to reach the engine: MemoryBackend itself, FakeBackend (built on it),
# the MemoryCache aliases and the umbrella header.
set(allowed
  rediskit/rediskit.hpp
  rediskit/caches.hpp
  rediskit/backend/memory_backend.hpp
  rediskit/backend/fake_backend.hpp)

file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/rediskit/*.hpp")
list(SORT headers)

# The direct includes of every header.
set(errors "")
foreach(h IN LISTS headers)
  file(STRINGS "${INCLUDE_DIR}/${h}" lines REGEX "^[ \t]*#[ \t]*include")
  set(deps "")
  foreach(line IN LISTS lines)
    if(line MATCHES "<(rediskit/[^>]+)>")
      list(APPEND deps "${CMAKE_MATCH_1}")
    elseif(line MATCHES "\"")
      string(APPEND errors "  ${h}: quoted include '${line}': write #include <rediskit/...>\n")
    endif()
  endforeach()
  string(MAKE_C_IDENTIFIER "${h}" id)
  set(deps_${id} "${deps}")
endforeach()

function(is_engine header out)
  if(header MATCHES "^rediskit/backend/detail/memory/" OR header STREQUAL "rediskit/backend/memory_backend.hpp")
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

set(checked 0)
foreach(h IN LISTS headers)
  is_engine("${h}" engine)
  if(engine OR h IN_LIST allowed)
    continue()
  endif()
  math(EXPR checked "${checked} + 1")
  # Breadth-first walk; parent_<id> remembers the edge that reached each header.
  set(seen "${h}")
  set(queue "${h}")
  set(found "")
  while(queue AND NOT found)
    list(POP_FRONT queue cur)
    string(MAKE_C_IDENTIFIER "${cur}" cid)
    foreach(dep IN LISTS deps_${cid})
      if(dep IN_LIST seen)
        continue()
      endif()
      list(APPEND seen "${dep}")
      string(MAKE_C_IDENTIFIER "${dep}" did)
      set(parent_${did} "${cur}")
      is_engine("${dep}" engine)
      if(engine)
        set(found "${dep}")
        break()
      endif()
      list(APPEND queue "${dep}")
    endforeach()
  endwhile()
  if(found)
    set(chain "${found}")
    set(cur "${found}")
    while(NOT cur STREQUAL h)
      string(MAKE_C_IDENTIFIER "${cur}" cid)
      set(cur "${parent_${cid}}")
      set(chain "${cur} -> ${chain}")
    endwhile()
    string(APPEND errors "  ${chain}\n")
  endif()
endforeach()

if(errors)
  list(JOIN allowed ", " allowed_text)
  message(FATAL_ERROR "headers that must not include the in-memory engine do (only "
                      "${allowed_text} may; move what the chain needs into a header of its "
                      "own layer):\n${errors}")
endif()
message(STATUS "${checked} headers checked: none includes the in-memory engine")
