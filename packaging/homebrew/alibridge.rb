# Homebrew formula for alibridge, installing the release binaries. This file is a template:
# `cargo xtask formula DIR` (run by .github/workflows/release.yml) fills in the version and the
# SHA-256 of each archive from DIR/SHA256SUMS and writes DIR/alibridge.rb, which is attached to
# the GitHub release for a tap to take.
class Alibridge < Formula
  desc "Stdio bridge for remote MCP servers, with Alibaba Cloud credentials"
  homepage "https://github.com/alibridge/alibridge"
  version "@VERSION@"
  license "Apache-2.0"

  base = "https://github.com/alibridge/alibridge/releases/download/v#{version}"
  on_macos do
    on_arm do
      url "#{base}/alibridge-#{version}-aarch64-apple-darwin.tar.gz"
      sha256 "@SHA256:aarch64-apple-darwin@"
    end
    on_intel do
      url "#{base}/alibridge-#{version}-x86_64-apple-darwin.tar.gz"
      sha256 "@SHA256:x86_64-apple-darwin@"
    end
  end
  on_linux do
    on_arm do
      url "#{base}/alibridge-#{version}-aarch64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256:aarch64-unknown-linux-musl@"
    end
    on_intel do
      url "#{base}/alibridge-#{version}-x86_64-unknown-linux-musl.tar.gz"
      sha256 "@SHA256:x86_64-unknown-linux-musl@"
    end
  end

  def install
    bin.install "alibridge"
  end

  test do
    assert_equal "alibridge #{version}", shell_output("#{bin}/alibridge --version").strip
  end
end
