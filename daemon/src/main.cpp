#include "rootseal/daemon/service.hpp"

int main(int argc, char** argv) { return rootseal::daemon::daemon_main(argc, argv); }
