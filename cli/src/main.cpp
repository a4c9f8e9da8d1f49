#include "rootseal/cli/cli.hpp"

int main(int argc, char** argv) { return rootseal::cli::run(argc, argv); }
