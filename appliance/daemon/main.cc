// signetd: the signing daemon. See appliance/daemon/daemon.h and DESIGN.md.
#include "appliance/daemon/daemon.h"

int main(int argc, char** argv) { return signet::daemon::DaemonMain(argc, argv); }
