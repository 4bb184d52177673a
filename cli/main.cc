#include "cli/cli.h"

int main(int argc, char** argv) { return sealpost::cli::Main(argc, argv); }
