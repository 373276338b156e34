# Conan 2 recipe for rediskit: a header-only package (one package for every setting).
#
#   conan create . --build=missing          builds nothing of rediskit; packages its headers
#   conan install --requires=rediskit/0.1.0  in a consumer, then find_package(rediskit CONFIG)
#
# The version below, ports/rediskit/vcpkg.json's, project(VERSION) and include/rediskit/version.hpp
# must agree: CMake checks project() at configure time, and scripts/run.sh (step "packages:
# versions agree") checks this recipe and the vcpkg port.
import os

from conan import ConanFile
from conan.tools.files import copy
from conan.tools.layout import basic_layout


class RediskitConan(ConanFile):
    name = "rediskit"
    version = "0.1.0"
    description = "Header-only C++20 Redis data layer for chat services, on Boost.Asio"
    topics = ("redis", "resp3", "asio", "header-only", "chat")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "CMakeLists.txt", "cmake/*"
    no_copy_source = True

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # Asio, Describe, Hana (headers) and Boost.JSON (compiled): Boost 1.81 or newer.
        self.requires("boost/[>=1.81.0]", transitive_headers=True)
        # TLS (rediskit/tls.hpp): OpenSSL through asio::ssl.
        self.requires("openssl/[>=3.0 <4]", transitive_headers=True)

    def validate(self):
        from conan.tools.build import check_min_cppstd
        check_min_cppstd(self, 20)

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"),
             os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "rediskit")
        self.cpp_info.set_property("cmake_target_name", "rediskit::rediskit")
        self.cpp_info.requires = ["boost::headers", "boost::json", "openssl::ssl"]
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread"]
