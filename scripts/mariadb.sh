#!/usr/bin/env bash
# A private MariaDB server for the tests and benchmarks: its own data directory under
# target/, loopback only, a dedicated user. Idempotent: reuses a running server.
#   scripts/mariadb.sh start   starts it (if needed) and prints its URL
#   scripts/mariadb.sh stop    stops it
# Needs Debian's mariadb-server package (mariadbd, mariadb-install-db, mariadb).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DOCKERMON_TEST_MYSQL_PORT:-33306}
dir=$PWD/target/test-mariadb
socket=$dir/mariadb.sock
url="mysql://dockermon:dockermon@127.0.0.1:$port"

running() { mariadb-admin --socket="$socket" --user=root ping >/dev/null 2>&1; }

case "${1:-start}" in
  stop)
    if running; then mariadb-admin --socket="$socket" --user=root shutdown; fi
    exit 0
    ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

if ! command -v mariadbd >/dev/null && [[ ! -x /usr/sbin/mariadbd ]]; then
  echo "mariadb.sh: MariaDB is not installed (Debian: apt-get install mariadb-server)" >&2
  exit 1
fi
PATH=$PATH:/usr/sbin

if ! running; then
  mkdir -p "$dir"
  if [[ ! -d "$dir/data/mysql" ]]; then
    mariadb-install-db --user="$(id -un)" --datadir="$dir/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 \
      || { cat "$dir/install.log" >&2; exit 1; }
  fi
  # Durable settings (flush at every commit), as in production: benchmarks run against this.
  nohup mariadbd --no-defaults --user="$(id -un)" --datadir="$dir/data" --socket="$socket" \
    --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mariadb.pid" \
    --log-error="$dir/error.log" --innodb-buffer-pool-size=1G --max-connections=500 \
    --skip-name-resolve >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    running && break
    sleep 0.5
  done
  if ! running; then
    echo "mariadb.sh: MariaDB did not start; see $dir/error.log" >&2
    tail -20 "$dir/error.log" >&2 || true
    exit 1
  fi
fi

# Only the scratch databases the tests and benchmarks create (dmtest_…, dmbench_…), never
# the server's own: a test user with ALL ON *.* is the "database as root" defect in small.
mariadb --socket="$socket" --user=root <<SQL
CREATE USER IF NOT EXISTS 'dockermon'@'127.0.0.1' IDENTIFIED BY 'dockermon';
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'dockermon'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`dm%\`.* TO 'dockermon'@'127.0.0.1';
SQL
echo "$url"
