#!/usr/bin/env bash
# Installs the Debian packages that building and testing Clinker need, and only those missing.
#
# Idempotent and cheap when nothing is missing (one dpkg-query, no apt, no sudo), so `make run`
# and `make test` call it every time. Runs apt non-interactively (CI has no stdin), waits up to
# 10 minutes for a dpkg lock another apt holds, and uses sudo only when not root (`sudo -n` when
# there is no terminal to ask a password on).
#
# Service start-up: none of these packages is a server, but a postinst must never start a
# service on a build machine. A policy-rc.d that refuses (exit 101) is put in place for the
# install when the machine has none, and removed afterwards; an existing one is left untouched.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make
  libsqlite3-dev nlohmann-json3-dev libspdlog-dev libcli11-dev libtomlplusplus-dev
  libexpected-dev libcpp-httplib-dev libboost-dev zlib1g-dev libssl-dev libyaml-cpp-dev libgtest-dev
  libgmock-dev
  libpqxx-dev libpq-dev librabbitmq-dev postgresql-15 rabbitmq-server etcd-server etcd-client
  python3 python3-cinderclient sqlite3 clang-format clang-tidy clang-14 libclang-rt-14-dev
  keystone uwsgi-core uwsgi-plugin-python3 python3-openstackclient tempest
)

missing=()
for package in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "${package}" 2>/dev/null || true)"
  if [[ "${status}" != "installed" ]]; then
    missing+=("${package}")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "setup: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
  if [[ ! -t 0 ]]; then
    sudo+=(-n)
  fi
fi

policy=/usr/sbin/policy-rc.d
if [[ ! -e "${policy}" ]]; then
  "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > ${policy} && chmod 755 ${policy}"
  trap '"${sudo[@]}" rm -f "${policy}"' EXIT
fi

# keystone (for the tests, run by scripts/test_server_keystone.sh as a plain process): no database
# set-up, admin or endpoint at install (these are the defaults; said explicitly), and its system
# service disabled afterwards (disable, never mask: the postinst enables it under set -e).
if [[ " ${missing[*]} " == *" keystone "* ]]; then
  printf '%s\n' 'keystone keystone/configure_db boolean false' \
    'keystone keystone/create-admin-tenant boolean false' \
    'keystone keystone/register-endpoint boolean false' | "${sudo[@]}" debconf-set-selections
fi

apt_get=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
"${apt_get[@]}" update
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null
if [[ " ${missing[*]} " == *" keystone "* ]] && command -v systemctl >/dev/null; then
  "${sudo[@]}" systemctl disable keystone >/dev/null 2>&1 || true
fi
echo "setup: done"
