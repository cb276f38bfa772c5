// appliance/cli/cli.h: the `signet` client, a command-line program; its interface is its command
// line and its output, summed up here. The code behind it lives in appliance/cli/internal/ and is
// linked only into the `signet` executable and tests/cli.
//
// `signet digest [-a ALGO]... [-r] [--jobs N] [--backend B] [--chunk-size BYTES] [--json] PATH...`
// hashes files where they are. `signet digest --check FILE` verifies a checksum file.
// `signet audit export --log DIR [--from-seq N] [--to-seq N] [--since TIME] [--until TIME]
// [--key NAME_OR_FINGERPRINT] [--identity ID] [--digest HEX] [--consistency-from N]... [-o FILE]
// [-q]` writes an export of the audit log (JSON Lines with proofs against the latest signed
// checkpoint), opening the log read-only while signetd may be writing it; ranges are half-open.
// `signet audit verify EXPORT... --key-file PUB.pem [--key-name NAME] [--json]` checks exports of
// the audit log offline: signatures, records, inclusion proofs or the recomputed root, and that
// several exports extend each other.
// `signet verify --key-file PUB.pem [--hash ALGO] [--sig-dir DIR] [--rsa-padding pkcs1|pss]
// [--json] FILE...` checks raw detached signatures (FILE.sig, or DIR/FILE.sig mirroring FILE's
// relative path) locally: ECDSA P-256/P-384 (DER) and RSA PKCS#1 v1.5 or PSS, over the file's
// SHA-256 (SHA-384 for P-384 keys) hashed by the pipeline; prints "FILE: OK" or
// "FILE: FAILED (REASON)" per file and a summary on stderr.
// `signet sign [--socket PATH | --url https://HOST:PORT --cert C --cert-key K --cacert CA] --key
// NAME [-r] [--out-dir DIR] [--batch-size N] [--requests N] [--jobs N] [--force] [--json] PATH...`
// hashes files and has signetd (HTTP over its Unix socket, or TLS 1.3 with a client certificate)
// sign the digests in batches, several requests in flight, while hashing continues, writing each
// raw signature atomically to FILE.sig (or DIR/FILE.sig with --out-dir); an existing .sig is
// kept, and its file failed, unless --force. A request that a policy rule holds for approval
// writes nothing for its files and exits 3; with --wait [--wait-timeout SECONDS] signet polls
// GET /v1/requests/ID until it is signed (then writes as usual), denied, expired or failed.
// `signet sign --collect ID [--wait [--wait-timeout SECONDS]] --key NAME PATH...` (not with
// --requests or --batch-size) sends nothing: it hashes PATH... as sign would, reads held request
// ID (polling with --wait), and once it is signed writes the signatures of those files, which
// must be exactly the request's files by name, each checked against the file as it is now (a
// file changed since the request fails); pending exits 3, denied, expired or failed exits 1.
// `signet keys list [--json]` and `signet keys show NAME [--pem] [--json]` (same connection
// options as sign) describe the keys signetd signs with; --pem prints the public key alone.
// `signet admin policy show|validate FILE|apply FILE [--comment TEXT]|versions|explain
// --principal P --key K [--tool T] [--artifact NAME...]`, `signet admin keys list|generate NAME
// --algorithm A --format F [--hsm H]|disable NAME [--reason R]|enable NAME [--reason R]` and
// `signet admin stats` and `signet admin approvals list [--all]|show ID|approve ID|deny ID --reason
// TEXT`, each with [--socket PATH] [--json], talk to signetd's admin socket
// (admin/API.md; default $SIGNET_ADMIN_SOCKET, else ./.signet/admin/admin.sock,
// /run/signet/admin/admin.sock, /var/lib/signet/admin/admin.sock). --json prints signetd's answer
// as it is; an invalid policy is reported as "FILE:LINE:COL: message" (exit 1).
//
// Caveats:
// - With one algorithm, output lines are byte-compatible with GNU coreutils 9.1 `sha256sum`
//   (`sha384sum`, `sha512sum`, `b2sum`): "HEX  NAME", and a name holding '\\', '\n' or '\r' gets
//   the line prefixed with '\\' and those characters escaped. Names are otherwise printed as raw
//   bytes, UTF-8 or not. With several algorithms (or --tag), lines are BSD tagged
//   "SHA256 (NAME) = HEX", one per algorithm per file.
// - Lines come in input order (directory entries in byte order of names), whatever order the files
//   finish in: output is deterministic.
// - A per-file failure goes to stderr as "signet: NAME: MESSAGE" and the other files carry on.
// - --json prints one JSON object per line per file; a name that is not valid UTF-8 is given with
//   U+FFFD replacement characters in "path" and its raw bytes in "path_hex".
// - A progress line is drawn on stderr only when stderr is a terminal.
// - stdout is block-buffered (1 MiB) unless it is a terminal; a write error (full disk, closed
//   pipe) is reported and makes the exit status 1.
// - `signet audit find FILE...|--digest HEX (--socket ADMIN_SOCK | --log DIR)` names the records
//   of a file's digest (who signed it, when, with which key, approved by whom); `signet audit
//   export --socket ADMIN_SOCK` exports through the admin API (role auditor) instead of --log.
// - `signet audit export` needs read access to the log's data.mdb and write access to its lock.mdb
//   (LMDB's reader table), i.e. signetd's user or root. With -o FILE it writes FILE.tmp.XXXXXX,
//   fsyncs it and renames it over FILE: a failed export never leaves a partial FILE.
#ifndef SIGNET_APPLIANCE_CLI_CLI_H_
#define SIGNET_APPLIANCE_CLI_CLI_H_

namespace signet::cli {

// Exit statuses of every `signet` subcommand.
inline constexpr int kExitOk = 0;      // everything asked for was done and verified
inline constexpr int kExitFailed = 1;  // something failed: a file, a check, a write
inline constexpr int kExitUsage = 2;   // bad command line: nothing was done
// `signet sign` only: files are held for approval (without --wait) and none failed.
inline constexpr int kExitHeld = 3;

}  // namespace signet::cli

#endif  // SIGNET_APPLIANCE_CLI_CLI_H_
