#!/usr/bin/env bash
# System packages the tests need, installed only when missing (so repeated
# `make test` runs never call apt): PostgreSQL (a real server for the storage
# tests), unixODBC (the runtime pyodbc loads for SQL Server), openssl (a
# self-signed certificate for the gateway's TLS test), curl and jq (the README's
# HTTP walk-through, run by a test), chromium (the dashboard's browser test)
# and docker-compose (validates docker-compose.yml; needs no Docker engine).
set -euo pipefail

packages=(postgresql unixodbc openssl curl jq chromium docker-compose)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
