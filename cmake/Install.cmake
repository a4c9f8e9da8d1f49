# Install rules: `cmake --install` lays out what the Debian package ships
# (debian/rules runs it through dh_auto_install). With the prefix /usr:
#   /usr/bin/rootseald, /usr/bin/rootseal
#   /lib/systemd/system/rootseald.service      (systemd.pc's systemdsystemunitdir)
#   /usr/lib/sysusers.d/rootseal.conf, /usr/lib/tmpfiles.d/rootseal.conf
#   /etc/rootseal/rootseald.yaml               (a conffile in the package)
#   /usr/share/man/man8/rootseald.8, /usr/share/man/man1/rootseal.1
#   /usr/share/bash-completion/completions/rootseald, .../rootseal
#   /usr/share/doc/rootseal/*.md, /usr/share/doc/rootseal/examples/*.conf.example
# With any other prefix everything stays under it (no write to /lib or /etc).
include(GNUInstallDirs)

install(TARGETS rootseald RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The CLI arrives with the ceremony issue; the package ships it when it exists.
if(TARGET rootseal)
  install(TARGETS rootseal RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# systemd's own folders when installing into /usr (Debian 12: /lib/systemd/system,
# /usr/lib/sysusers.d, /usr/lib/tmpfiles.d), else below the prefix.
set(_rootseal_unitdir "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
set(_rootseal_sysusersdir "${CMAKE_INSTALL_PREFIX}/lib/sysusers.d")
set(_rootseal_tmpfilesdir "${CMAKE_INSTALL_PREFIX}/lib/tmpfiles.d")
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_get_variable(_rootseal_pc_unitdir systemd systemdsystemunitdir)
    pkg_get_variable(_rootseal_pc_sysusersdir systemd sysusersdir)
    pkg_get_variable(_rootseal_pc_tmpfilesdir systemd tmpfilesdir)
  endif()
  set(_rootseal_unitdir "/lib/systemd/system")
  if(_rootseal_pc_unitdir)
    set(_rootseal_unitdir "${_rootseal_pc_unitdir}")
  endif()
  if(_rootseal_pc_sysusersdir)
    set(_rootseal_sysusersdir "${_rootseal_pc_sysusersdir}")
  endif()
  if(_rootseal_pc_tmpfilesdir)
    set(_rootseal_tmpfilesdir "${_rootseal_pc_tmpfilesdir}")
  endif()
endif()
set(ROOTSEAL_SYSTEMD_UNIT_DIR "${_rootseal_unitdir}" CACHE PATH "where rootseald.service is installed")
set(ROOTSEAL_SYSUSERS_DIR "${_rootseal_sysusersdir}" CACHE PATH "where the sysusers.d file is installed")
set(ROOTSEAL_TMPFILES_DIR "${_rootseal_tmpfilesdir}" CACHE PATH "where the tmpfiles.d file is installed")

install(FILES systemd/rootseald.service DESTINATION "${ROOTSEAL_SYSTEMD_UNIT_DIR}")
install(FILES systemd/rootseal.sysusers DESTINATION "${ROOTSEAL_SYSUSERS_DIR}" RENAME rootseal.conf)
install(FILES systemd/rootseal.tmpfiles DESTINATION "${ROOTSEAL_TMPFILES_DIR}" RENAME rootseal.conf)

install(FILES packaging/rootseald.yaml DESTINATION "${CMAKE_INSTALL_FULL_SYSCONFDIR}/rootseal")

install(FILES packaging/man/rootseald.8 DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
if(TARGET rootseal)
  install(FILES packaging/man/rootseal.1 DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
endif()

# bash completions (bash-completion loads them on first use of the command).
install(FILES packaging/completion/rootseald DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions")
if(TARGET rootseal)
  install(FILES packaging/completion/rootseal DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions")
endif()

# Operator documentation (development.md is for building rootseal, not running it).
file(GLOB _rootseal_docs CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/docs/*.md")
list(FILTER _rootseal_docs EXCLUDE REGEX "/development\\.md$")
install(FILES README.md ${_rootseal_docs} DESTINATION "${CMAKE_INSTALL_DOCDIR}")
file(GLOB _rootseal_dropins CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/systemd/*.conf.example")
install(FILES ${_rootseal_dropins} DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples")
