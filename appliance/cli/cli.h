// appliance/cli/cli.h: the `signet` client.
//
// Not built yet: the client's subcommands (`sign`, `digest`, `verify`, `keys`, `admin ...`,
// `audit ...`) will live here. It may use: pipeline, formats, base.
#ifndef SIGNET_APPLIANCE_CLI_CLI_H_
#define SIGNET_APPLIANCE_CLI_CLI_H_

#include "appliance/base/base.h"

namespace signet::cli {}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_CLI_H_
