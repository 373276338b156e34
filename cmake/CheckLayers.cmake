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
# FallbackBackend (its default secondary), the MemoryCache aliases and the umbrella header.
set(allowed
  rediskit/rediskit.hpp
  rediskit/caches.hpp
  rediskit/backend/memory_backend.hpp
  rediskit/backend/fake_backend.hpp
  rediskit/backend/fallback_backend.hpp)

file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/rediskit/*.hpp")
list(SORT headers)

# The direct includes of every header.
set(quoted "")
foreach(h IN LISTS headers)
  file(STRINGS "${INCLUDE_DIR}/${h}" lines REGEX "^[ \t]*#[ \t]*include")
  set(deps "")
  foreach(line IN LISTS lines)
    if(line MATCHES "<(rediskit/[^>]+)>")
      list(APPEND deps "${CMAKE_MATCH_1}")
    elseif(line MATCHES "\"")
      string(APPEND quoted "  ${h}: quoted include '${line}': write #include <rediskit/...>\n")
    endif()
  endforeach()
  string(MAKE_C_IDENTIFIER "${h}" id)
  set(deps_${id} "${deps}")
endforeach()

if(quoted)
  message(FATAL_ERROR "public headers include each other as <rediskit/...> only:\n${quoted}")
endif()

# check_layer(<name> <regex of the guarded headers> <what to say> <allowed header>...): every
# header that is neither guarded nor allowed must not reach a guarded header; errors name the
# include chain.
function(check_layer name guarded advice)
  set(allowed ${ARGN})
  set(errors "")
  set(checked 0)
  foreach(h IN LISTS headers)
    if(h MATCHES "${guarded}" OR h IN_LIST allowed)
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
        if(dep MATCHES "${guarded}")
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
    message(FATAL_ERROR "headers that must not include ${name} do (only ${allowed_text} may; "
                        "${advice}):\n${errors}")
  endif()
  message(STATUS "${checked} headers checked: none includes ${name}")
endfunction()

check_layer("the in-memory engine"
  "^rediskit/backend/(detail/memory/|memory_backend\\.hpp$)"
  "move what the chain needs into a header of its own layer"
  ${allowed})

# TLS: OpenSSL and asio::ssl cost ~2 s of compile time per translation unit that uses a
# Connection (issue 13); only <rediskit/tls.hpp> (and the umbrella) compile them. Connection
# itself reaches TLS through rediskit/detail/tls_session.hpp, which includes neither.
check_layer("the OpenSSL code (rediskit/detail/tls.hpp)"
  "^rediskit/detail/tls\\.hpp$"
  "Connection reaches TLS through rediskit/detail/tls_session.hpp"
  rediskit/tls.hpp rediskit/rediskit.hpp)
# rediskit/detail/crypto.hpp includes <openssl/evp.h> and <openssl/rand.h> (SHA-256 and random
# bytes for SessionStore), which are cheap; never ssl.h.
foreach(h IN LISTS headers)
  if(h STREQUAL "rediskit/detail/tls.hpp")
    continue()
  endif()
  if(h STREQUAL "rediskit/detail/crypto.hpp")
    file(STRINGS "${INCLUDE_DIR}/${h}" ssl REGEX "^[ \t]*#[ \t]*include[ \t]*<(openssl/ssl|boost/asio/ssl)")
    if(ssl)
      message(FATAL_ERROR "${h} includes ${ssl}: only rediskit/detail/tls.hpp may")
    endif()
    continue()
  endif()
  file(STRINGS "${INCLUDE_DIR}/${h}" ssl REGEX "^[ \t]*#[ \t]*include[ \t]*<(openssl/|boost/asio/ssl)")
  if(ssl)
    message(FATAL_ERROR "${h} includes OpenSSL or asio::ssl (${ssl}): only "
                        "rediskit/detail/tls.hpp may")
  endif()
endforeach()

