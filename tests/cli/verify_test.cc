// `signet verify` against keys and signatures made by the real `openssl` command line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "run_util.h"

namespace signet::cli::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class VerifyTest : public CliTest {
 protected:
  // Makes NAME.key (private) and NAME.pub.pem with `openssl genpkey`; returns NAME.pub.pem.
  // `spec` is "P-256", "P-384", "RSA-3072" or "ED25519".
  std::string MakeKey(const std::string& name, const std::string& spec) {
    std::vector<std::string> argv{"openssl", "genpkey", "-out", name + ".key"};
    if (spec.starts_with("P-")) {
      argv.insert(argv.end(), {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + spec});
    } else if (spec.starts_with("RSA-")) {
      argv.insert(argv.end(),
                  {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:" + spec.substr(4)});
    } else {
      argv.insert(argv.end(), {"-algorithm", spec});
    }
    ProcessResult made = Tool(argv);
    EXPECT_EQ(made.exit_code, 0) << made;
    ProcessResult pub =
        Tool({"openssl", "pkey", "-in", name + ".key", "-pubout", "-out", name + ".pub.pem"});
    EXPECT_EQ(pub.exit_code, 0) << pub;
    return name + ".pub.pem";
  }

  // Signs `file` with `openssl dgst -MD -sign NAME.key` into `out` (default FILE.sig).
  void Sign(const std::string& key_name, const std::string& file, const std::string& md = "sha256",
            bool pss = false, std::string out = "") {
    if (out.empty()) {
      out = file + ".sig";
    }
    std::vector<std::string> argv{"openssl", "dgst", "-" + md, "-sign", key_name + ".key"};
    if (pss) {
      argv.insert(argv.end(), {"-sigopt", "rsa_padding_mode:pss", "-sigopt",
                               "rsa_pss_saltlen:digest", "-sigopt", "rsa_mgf1_md:" + md});
    }
    argv.insert(argv.end(), {"-out", out, file});
    ProcessResult signed_ = Tool(argv);
    ASSERT_EQ(signed_.exit_code, 0) << signed_;
  }

  ProcessResult Verify(const std::string& pub, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"verify", "--key-file", pub};
    argv.insert(argv.end(), args.begin(), args.end());
    return Signet(argv);
  }

  // Flips one bit of byte `at` of dir()/name (negative: from the end).
  void Corrupt(const std::string& name, long at) {
    std::string bytes = ReadFile(dir() / name);
    ASSERT_FALSE(bytes.empty());
    const auto index =
        at >= 0 ? static_cast<std::size_t>(at) : bytes.size() - static_cast<std::size_t>(-at);
    bytes[index] = static_cast<char>(bytes[index] ^ 0x01);
    WriteFile(dir() / name, bytes);
  }
};

TEST_F(VerifyTest, EcdsaP256GoodSignatures) {
  const std::string pub = MakeKey("k", "P-256");
  Make("a.txt", "hello\n");
  Make("sub/b.bin", RandomBytes(3 * (1 << 20) + 17, 1));  // several pipeline chunks
  Sign("k", "a.txt");
  Sign("k", "sub/b.bin");
  ProcessResult r = Verify(pub, {"a.txt", "sub/b.bin"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "a.txt: OK\nsub/b.bin: OK\n");
  EXPECT_THAT(r.err, HasSubstr("2 files verified OK (ECDSA P-256 key, sha256)"));
}

TEST_F(VerifyTest, RsaPkcs1AndPss) {
  const std::string pub = MakeKey("k", "RSA-3072");
  Make("v15", "pkcs1 signed");
  Make("pss", "pss signed");
  Sign("k", "v15");
  Sign("k", "pss", "sha256", /*pss=*/true);
  ProcessResult r = Verify(pub, {"v15"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "v15: OK\n");
  EXPECT_THAT(r.err, HasSubstr("RSA-3072 key, sha256"));

  r = Verify(pub, {"--rsa-padding", "pss", "pss"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "pss: OK\n");

  // Each padding refuses the other's signatures.
  r = Verify(pub, {"pss"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "pss: FAILED (signature does not match)\n");
  r = Verify(pub, {"--rsa-padding", "pss", "v15"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "v15: FAILED (signature does not match)\n");
}

TEST_F(VerifyTest, RsaPssWithSha512) {
  const std::string pub = MakeKey("k", "RSA-3072");
  Make("f", RandomBytes(100000, 2));
  Sign("k", "f", "sha512", /*pss=*/true);
  ProcessResult r = Verify(pub, {"--rsa-padding", "pss", "--hash", "sha512", "f"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "f: OK\n");
}

TEST_F(VerifyTest, EachFailureNamedAndTheOthersCarryOn) {
  const std::string pub = MakeKey("k", "P-256");
  for (const char* name : {"good", "changed", "badsig", "nosig", "garbage", "good2"}) {
    Make(name, std::string("content of ") + name);
    Sign("k", name);
  }
  Make("changed", "content of changed, but changed");
  Corrupt("badsig.sig", -3);  // inside s: still DER, no longer the signature
  std::filesystem::remove(dir() / "nosig.sig");
  Make("garbage.sig", "this is not a signature\n");

  ProcessResult r =
      Verify(pub, {"good", "changed", "badsig", "nosig", "garbage", "nothere", "good2"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out,
            "good: OK\n"
            "changed: FAILED (signature does not match)\n"
            "badsig: FAILED (signature does not match)\n"
            "nosig: FAILED (no signature: neither nosig.sig nor nosig.receipt exists)\n"
            "garbage: FAILED (malformed signature: not a DER ECDSA signature (24 bytes))\n"
            "nothere: FAILED (No such file or directory)\n"
            "good2: OK\n");
  EXPECT_THAT(r.err, HasSubstr("WARNING: 5 of 7 files FAILED verification"));
}

TEST_F(VerifyTest, RsaChangedSignatureByteAndGarbage) {
  const std::string pub = MakeKey("k", "RSA-3072");
  Make("a", "a");
  Make("b", "b");
  Sign("k", "a");
  Sign("k", "b");
  Corrupt("a.sig", 100);
  Make("b.sig", "short");
  ProcessResult r = Verify(pub, {"a", "b"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out,
            "a: FAILED (signature does not match)\n"
            "b: FAILED (malformed signature: 5 bytes, but RSA-3072 signatures are 384 bytes)\n");
}

TEST_F(VerifyTest, SignatureThatIsAFifoOrHuge) {
  const std::string pub = MakeKey("k", "P-256");
  Make("a", "a");
  Make("b", "b");
  ASSERT_EQ(::mkfifo((dir() / "a.sig").c_str(), 0600), 0);  // must not block
  Make("b.sig", std::string(1 << 20, 'x'));
  ProcessResult r = Verify(pub, {"a", "b"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out,
            "a: FAILED (malformed signature: a.sig: not a regular file)\n"
            "b: FAILED (malformed signature: b.sig: larger than 4096 bytes)\n");
}

TEST_F(VerifyTest, WrongKey) {
  MakeKey("signer", "P-256");
  const std::string other = MakeKey("other", "P-256");
  Make("f", "signed by signer");
  Sign("signer", "f");
  ProcessResult r = Verify(other, {"f"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "f: FAILED (signature does not match)\n");
}

TEST_F(VerifyTest, SigDirMirrorsRelativePaths) {
  const std::string pub = MakeKey("k", "P-256");
  Make("dist/x/app.tar", RandomBytes(5000, 3));
  Make("top", "top");
  std::filesystem::create_directories(dir() / "sigs/dist/x");
  Sign("k", "dist/x/app.tar", "sha256", false, "sigs/dist/x/app.tar.sig");
  Sign("k", "top", "sha256", false, "sigs/top.sig");
  ProcessResult r = Verify(pub, {"--sig-dir", "sigs", "dist/x/app.tar", "./top"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "dist/x/app.tar: OK\n./top: OK\n");

  // Not next to the file: without --sig-dir it is missing.
  r = Verify(pub, {"top"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "top: FAILED (no signature: neither top.sig nor top.receipt exists)\n");
  r = Verify(pub, {"--sig-dir", "elsewhere", "top"});
  EXPECT_EQ(
      r.out,
      "top: FAILED (no signature: neither elsewhere/top.sig nor elsewhere/top.receipt exists)\n");

  r = Verify(pub, {"--sig-dir", "sigs", (dir() / "top").string()});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("is absolute"));
  r = Verify(pub, {"--sig-dir", "sigs", "dist/../top"});
  EXPECT_EQ(r.exit_code, 2) << r;
  EXPECT_THAT(r.err, HasSubstr("'..'"));
}

TEST_F(VerifyTest, DirectoryArgumentFails) {
  const std::string pub = MakeKey("k", "P-256");
  Make("d/inside", "x");
  Make("d.sig", "whatever");
  ProcessResult r = Verify(pub, {"d"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "d: FAILED (is a directory; name the files in it)\n");
}

TEST_F(VerifyTest, EmptyFile) {
  const std::string pub = MakeKey("k", "P-256");
  Make("empty", "");
  Sign("k", "empty");
  ProcessResult r = Verify(pub, {"empty"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "empty: OK\n");
}

TEST_F(VerifyTest, P384DefaultsToSha384) {
  const std::string pub = MakeKey("k", "P-384");
  Make("f384", "signed with sha384");
  Make("f256", "signed with sha256");
  Sign("k", "f384", "sha384");
  Sign("k", "f256", "sha256");
  ProcessResult r = Verify(pub, {"f384", "f256"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "f384: OK\nf256: FAILED (signature does not match)\n");
  EXPECT_THAT(r.err, HasSubstr("ECDSA P-384 key, sha384"));
  r = Verify(pub, {"--hash", "sha256", "f256"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "f256: OK\n");
}

TEST_F(VerifyTest, HashMismatchFails) {
  const std::string pub = MakeKey("k", "P-256");
  Make("f", "signed with sha256");
  Sign("k", "f");
  for (const char* hash : {"sha384", "sha512"}) {
    ProcessResult r = Verify(pub, {"--hash", hash, "f"});
    EXPECT_EQ(r.exit_code, 1) << hash << r;
    EXPECT_EQ(r.out, "f: FAILED (signature does not match)\n") << hash;
  }
}

TEST_F(VerifyTest, JsonSaysWhatFailed) {
  const std::string pub = MakeKey("k", "P-256");
  Make("ok", "ok");
  Make("bad", "bad");
  Sign("k", "ok");
  Sign("k", "bad");
  Make("bad", "bad, changed");
  Make("nosig", "n");
  ProcessResult r = Verify(pub, {"--json", "ok", "bad", "nosig"});
  EXPECT_EQ(r.exit_code, 1) << r;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.size(), 3u) << r;
  EXPECT_EQ(lines[0]["path"], "ok");
  EXPECT_EQ(lines[0]["signature"], "ok.sig");
  EXPECT_EQ(lines[0]["ok"], true);
  EXPECT_EQ(lines[0]["hash"], "sha256");
  EXPECT_EQ(lines[0]["digest"],
            "2689367b205c16ce32ed4200942b8b8b1e262dfc70d9bc9fbc77c49699a4f1df");  // sha256("ok")
  EXPECT_FALSE(lines[0].contains("error"));
  EXPECT_EQ(lines[1]["path"], "bad");
  EXPECT_EQ(lines[1]["ok"], false);
  EXPECT_EQ(lines[1]["error"]["kind"], "mismatch");
  EXPECT_EQ(lines[1]["error"]["message"], "signature does not match");
  EXPECT_EQ(lines[2]["ok"], false);
  EXPECT_EQ(lines[2]["error"]["kind"], "no_signature");
  EXPECT_EQ(lines[2]["error"]["message"],
            "no signature: neither nosig.sig nor nosig.receipt exists");
}

TEST_F(VerifyTest, UsageErrors) {
  const std::string pub = MakeKey("k", "P-256");
  Make("f", "f");
  Sign("k", "f");
  const std::vector<std::vector<std::string>> cases{
      {"verify", "f"},                                                   // no --key-file
      {"verify", "--key-file", pub},                                     // no FILE
      {"verify", "--key-file", pub, "--hash", "md5", "f"},               // unknown hash
      {"verify", "--key-file", pub, "--hash", "blake2b512", "f"},        // not for signatures
      {"verify", "--key-file", pub, "--rsa-padding", "oaep", "f"},       // unknown padding
      {"verify", "--key-file", pub, "--rsa-padding", "pss", "f"},        // pss with an EC key
      {"verify", "--key-file", pub, "--no-such-option", "f"},            // unknown option
      {"verify", "--key-file", pub, "--sig-dir", "/", "/etc/hostname"},  // absolute with --sig-dir
  };
  for (const auto& args : cases) {
    ProcessResult r = Signet(args);
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(args) << r;
    EXPECT_EQ(r.out, "") << ::testing::PrintToString(args);
    EXPECT_FALSE(r.err.empty()) << ::testing::PrintToString(args);
  }
}

TEST_F(VerifyTest, UnusableKeyFiles) {
  Make("f", "f");
  const std::string ed = MakeKey("ed", "ED25519");
  Make("f.sig", std::string(64, 'x'));  // refused for the key, before any signature is read
  ProcessResult r = Verify(ed, {"f"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("raw Ed25519 signatures are not supported yet"));

  MakeKey("p", "P-256");
  r = Verify("p.key", {"f"});  // a private key
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_THAT(r.err, HasSubstr("give the public key"));

  Make("junk.pem", "not a key");
  r = Verify("junk.pem", {"f"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_THAT(r.err, StartsWith("signet: junk.pem: not a public key"));

  r = Verify("missing.pem", {"f"});
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_THAT(r.err, HasSubstr("missing.pem: No such file or directory"));
}

TEST_F(VerifyTest, DerPublicKeyAndLargeFile) {
  MakeKey("k", "P-256");
  ProcessResult der =
      Tool({"openssl", "pkey", "-in", "k.key", "-pubout", "-outform", "DER", "-out", "k.pub.der"});
  ASSERT_EQ(der.exit_code, 0) << der;
  Make("big", RandomBytes(40 * (1 << 20) + 5, 9));
  Sign("k", "big");
  ProcessResult r = Verify("k.pub.der", {"big"});
  EXPECT_EQ(r.exit_code, 0) << r;
  EXPECT_EQ(r.out, "big: OK\n");
}

TEST_F(VerifyTest, FileChangedWhileHashing) {
  // A writer keeps rewriting the first byte (same size, new mtime) while signet reads the file:
  // the verdict must be "changed", never a verification of a mix of old and new bytes.
  const std::string pub = MakeKey("k", "P-256");
  Make("moving", RandomBytes(48 * (1 << 20), 4));
  Sign("k", "moving");
  const int fd = ::open((dir() / "moving").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::atomic<bool> done{false};
  std::atomic<int> rounds{0};
  std::thread writer([&] {
    for (char byte = 0; !done.load(); ++byte) {
      if (::pwrite(fd, &byte, 1, 0) != 1) {
        break;
      }
      rounds.fetch_add(1);
    }
  });
  while (rounds.load() == 0) {
    std::this_thread::yield();
  }
  ProcessResult r = Verify(pub, {"moving"});
  done = true;
  writer.join();
  ::close(fd);
  EXPECT_EQ(r.exit_code, 1) << r;
  EXPECT_EQ(r.out, "moving: FAILED (file changed while hashing)\n");
}

}  // namespace
}  // namespace signet::cli::testing
