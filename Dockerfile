# Image for the shipgate container action (action.yml points at the pushed tag, so jobs pull
# it instead of building). Built and pushed by .github/workflows/release.yml.
#
# Base images are referenced by tag. Pin them by digest (`name:tag@sha256:…`) once the
# digests can be resolved from the registry and kept current by Dependabot or Renovate.

# ---- build ------------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS builder
WORKDIR /build

# Dependency layer: build every dependency against a placeholder main, so that source-only
# changes reuse this layer. (If Cargo.toml ever declares explicit [[bin]]/[[test]] paths,
# copy or stub those files here too.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked \
    && rm -rf src

COPY src ./src
# COPY keeps the files' original mtimes, which can be older than the placeholder build:
# touch the entry point so cargo rebuilds the crate itself.
RUN touch src/main.rs \
    && cargo build --release --locked

# ---- PostgreSQL apt repository key ------------------------------------------------------
# Fetched and checked in a throwaway stage so that curl and gpg never reach the final image.
FROM debian:bookworm-slim AS pgdg-key
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Fingerprint of the PostgreSQL Debian repository signing key (apt.postgresql.org, key id
# ACCC4CF8); the same key ships in Debian's postgresql-common package.
ARG PGDG_KEY_FINGERPRINT=B97B0AFCAA1A47F044F244A07FCC7D46ACCC4CF8
# Unpinned versions on purpose (see the runtime stage); nothing from this stage but the
# checked key reaches the image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gpg \
    && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL --proto '=https' --tlsv1.2 --retry 3 \
        -o /tmp/pgdg.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && GNUPGHOME="$(mktemp -d)" \
    && export GNUPGHOME \
    && primary="$(gpg --show-keys --with-colons /tmp/pgdg.asc \
        | awk -F: '$1 == "pub" { p = 1; next } p && $1 == "fpr" { print $10; p = 0 }')" \
    && if [ "$primary" != "$PGDG_KEY_FINGERPRINT" ]; then \
        echo "unexpected PostgreSQL repository key: ${primary:-none}" >&2; exit 1; \
    fi \
    && gpg --dearmor -o /pgdg.gpg /tmp/pgdg.asc

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim
# No USER instruction: GitHub runs container actions as root (the workspace and file-command
# files are not writable otherwise).

# pg_dump refuses servers newer than its own major version: keep this at the newest major
# the deployments target.
ARG PG_MAJOR=18

COPY --from=pgdg-key /pgdg.gpg /usr/share/keyrings/apt.postgresql.org.gpg

# The packages and the setup after them are in docker/ (one list for this image and for
# .ci/rootfs.sh, which assembles the same root filesystem for the tests).
COPY docker/runtime-packages.txt docker/runtime-setup.sh /tmp/runtime/
# Package versions are not pinned: bookworm and apt.postgresql.org drop superseded versions
# (security updates), so exact pins would break rebuilds. The PostgreSQL major version is
# pinned through the package name, and each release image is immutable once pushed.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && echo "deb [signed-by=/usr/share/keyrings/apt.postgresql.org.gpg] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && sed -e '/^#/d' -e '/^$/d' -e "s/@PG_MAJOR@/${PG_MAJOR}/" /tmp/runtime/runtime-packages.txt \
        | xargs apt-get install -y --no-install-recommends \
    && sh /tmp/runtime/runtime-setup.sh \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime

COPY --from=builder /build/target/release/shipgate /usr/local/bin/shipgate
# Build check: the binary runs on this base (glibc, shared libraries).
RUN shipgate --version

ENTRYPOINT ["shipgate"]
CMD ["--help"]
