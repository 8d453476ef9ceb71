# Sourced by bench/fleet.sh and bench/replicas.sh (from the repository's root): raises the
# file limit, picks the binaries and starts the test MariaDB with a fresh database.
# Sets: bin (where dockermon-collector and fleet are), server (MariaDB URL without a
# database), database (its name), socket (MariaDB's socket, for root).
ulimit -n "$(ulimit -Hn)"  # one socket per simulated agent, on both ends
# FLEET_BIN_DIR: take dockermon-collector and fleet from there (another revision's build, for
# a baseline) instead of building this checkout.
bin=${FLEET_BIN_DIR:-target/release}
if [[ -z "${FLEET_BIN_DIR:-}" ]]; then
  cargo build --release --locked -p dockermon-collector -p dockermon-e2e --bin dockermon-collector --bin fleet
fi
server=$(scripts/mariadb.sh start)
database=dmfleet_$$
socket=target/test-mariadb/mariadb.sock
mariadb --socket=$socket --user=root -e "CREATE DATABASE $database"
