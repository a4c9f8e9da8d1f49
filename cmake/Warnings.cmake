# Every target of the project is built with these flags; -Werror is not optional.
add_compile_options(
  -Wall -Wextra -Werror -Wpedantic
  -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
  -Wconversion -Wsign-conversion -Wdouble-promotion -Wformat=2
  -Wimplicit-fallthrough
)
# GCC 12 reports false -Wrestrict errors inside libstdc++ for ordinary
# std::string concatenation at -O2/-O3 (GCC bug 105651, fixed in GCC 13).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  add_compile_options(-Wno-restrict)
endif()
# Hardening flags for the product binaries (Debian's own defaults, made explicit).
add_compile_options(-fstack-protector-strong -fstack-clash-protection -fcf-protection
                    $<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>
                    -D_GLIBCXX_ASSERTIONS)
add_link_options(-Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack -Wl,--as-needed)

if(ROOTSEAL_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
