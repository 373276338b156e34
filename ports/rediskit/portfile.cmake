# vcpkg port of rediskit (header-only). Used as an overlay port from a checkout:
#   vcpkg install rediskit --overlay-ports=<rediskit>/ports
# The source is the checkout this port sits in (SOURCE_PATH below), so the port and the
# headers it installs never disagree; a registry copy would use vcpkg_from_git instead.
set(VCPKG_BUILD_TYPE release)  # header-only: one configuration is enough

get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DREDISKIT_BUILD_TESTS=OFF
    -DREDISKIT_BUILD_EXAMPLES=OFF
    -DREDISKIT_BUILD_BENCHMARKS=OFF
    -DREDISKIT_BUILD_FUZZERS=OFF
    -DREDISKIT_USE_CCACHE=OFF
    -DREDISKIT_INSTALL=ON
    -DREDISKIT_INSTALL_CMAKEDIR=share/rediskit
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME rediskit CONFIG_PATH share/rediskit)

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
# vcpkg requires share/<port>/copyright. rediskit has no LICENSE file yet; until it has one,
# the file says so rather than naming a license nobody chose.
file(WRITE "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright"
     "rediskit ${VERSION}: no license has been chosen yet (no LICENSE file in the source).\n")
