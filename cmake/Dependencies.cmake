# All dependencies come from Debian 12 packages (scripts/install-deps).
find_package(OpenSSL 3.0 REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS json url)
find_package(yaml-cpp REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(P11KIT REQUIRED IMPORTED_TARGET p11-kit-1)
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

# Boost.Asio/Beast are header-only; keep them from pulling deprecated APIs.
# (No BOOST_BEAST_USE_STD_STRING_VIEW: since Boost 1.81 it only prints a
# deprecation note; beast::string_view is boost::core::string_view either way,
# which converts to and from std::string_view.)
add_library(rootseal_boost INTERFACE)
target_link_libraries(rootseal_boost INTERFACE Boost::headers Boost::json Boost::url Threads::Threads)
target_compile_definitions(rootseal_boost INTERFACE BOOST_ASIO_NO_DEPRECATED BOOST_ASIO_DISABLE_BOOST_COROUTINE)

# The PKCS#11 headers only (p11-kit's pkcs11.h); modules are dlopen'ed at run time.
add_library(rootseal_pkcs11_headers INTERFACE)
target_include_directories(rootseal_pkcs11_headers SYSTEM INTERFACE ${P11KIT_INCLUDE_DIRS})

# The Kubernetes KMS v2 plugin (kmsplugin/): Debian's gRPC 1.51 and protobuf,
# stubs generated at build time.
pkg_check_modules(GRPCPP REQUIRED IMPORTED_TARGET grpc++ protobuf)
find_program(ROOTSEAL_PROTOC protoc REQUIRED)
find_program(ROOTSEAL_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
