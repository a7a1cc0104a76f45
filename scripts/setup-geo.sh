#!/usr/bin/env bash
# Installs freely licensed country and ASN databases where egresswatch looks by default
# ($EGRESSWATCH_GEO_DIR, else ./geo), as country.mmdb and asn.mmdb:
#   country: @ip-location-db/geo-whois-asn-country-mmdb (npm; package licence CC0-1.0,
#            built from NRO data, CC BY 4.0)
#   asn:     @ip-location-db/asn (npm; CSV, CC BY 4.0 by RouteViews, DB-IP and NRO),
#            turned into an .mmdb by scripts/csv-to-mmdb.mjs, since the registry has no
#            mmdb build of it.
# Needs node and npm (installed with apt when missing and run as root). Re-running is safe:
# a database whose package version is already installed is kept. GeoLite2 files work as
# drop-ins through [geo] country_db / asn_db in the config instead.
#
# usage: scripts/setup-geo.sh [DIR]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-${EGRESSWATCH_GEO_DIR:-geo}}"
country_pkg="@ip-location-db/geo-whois-asn-country-mmdb"
asn_pkg="@ip-location-db/asn"

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup-geo: installing nodejs and npm with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "setup-geo: needs node and npm (e.g. apt-get install nodejs npm)" >&2
        exit 1
    fi
fi

mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Downloads one package's tarball and unpacks it into $work/NAME; prints its version.
fetch() {
    local pkg="$1" name="$2"
    mkdir -p "$work/$name"
    local tgz
    tgz="$(cd "$work/$name" && npm pack --silent "$pkg" 2>/dev/null | tail -n 1)"
    tar -xzf "$work/$name/$tgz" -C "$work/$name"
    node -p "require('$work/$name/package/package.json').version"
}

installed_version() {
    local stamp="$dest/$1.version"
    [ -f "$dest/$1.mmdb" ] && [ -f "$stamp" ] && cat "$stamp" || true
}

# Country: the package ships the mmdb itself.
want="$(npm view "$country_pkg" version 2>/dev/null)"
if [ -n "$want" ] && [ "$(installed_version country)" = "$country_pkg@$want" ]; then
    echo "setup-geo: country.mmdb is already $country_pkg@$want"
else
    version="$(fetch "$country_pkg" country)"
    cp "$work/country/package/geo-whois-asn-country.mmdb" "$dest/country.mmdb.tmp"
    mv "$dest/country.mmdb.tmp" "$dest/country.mmdb"
    cp "$work/country/package/NRO_LICENSE" "$dest/country-NRO_LICENSE"
    echo "$country_pkg@$version" >"$dest/country.version"
    echo "setup-geo: installed $dest/country.mmdb from $country_pkg@$version"
fi

# ASN: CSV in the package, built into an mmdb here.
want="$(npm view "$asn_pkg" version 2>/dev/null)"
if [ -n "$want" ] && [ "$(installed_version asn)" = "$asn_pkg@$want" ]; then
    echo "setup-geo: asn.mmdb is already $asn_pkg@$want"
else
    version="$(fetch "$asn_pkg" asn)"
    node "$here/csv-to-mmdb.mjs" --layout asn --type "ip-location-db-asn" \
        --desc "$asn_pkg@$version: RouteViews, DB-IP and NRO data, CC BY 4.0" \
        --out "$dest/asn.mmdb" \
        "$work/asn/package/asn-ipv4.csv" "$work/asn/package/asn-ipv6.csv"
    for f in ROUTEVIEWS-LICENSE DBIP-LICENSE NRO_LICENSE MODIFICATIONS; do
        cp "$work/asn/package/$f" "$dest/asn-$f"
    done
    echo "$asn_pkg@$version" >"$dest/asn.version"
    echo "setup-geo: installed $dest/asn.mmdb from $asn_pkg@$version"
fi

cat >"$dest/ATTRIBUTION.txt" <<EOF
Databases installed by egresswatch's scripts/setup-geo.sh from the ip-location-db
packages on the npm registry:
- country.mmdb: $(cat "$dest/country.version"), package licence CC0-1.0; its
  Whois data is from the NRO (nro.net), CC BY 4.0 (country-NRO_LICENSE).
- asn.mmdb: $(cat "$dest/asn.version"), CC BY 4.0; data from RouteViews
  (routeviews.org), DB-IP (db-ip.com: IP to ASN Lite) and the NRO (nro.net), converted
  from CSV to MMDB unchanged in content (asn-*LICENSE, asn-MODIFICATIONS).
EOF
echo "setup-geo: licences and attribution in $dest/ATTRIBUTION.txt:"
sed 's/^/  /' "$dest/ATTRIBUTION.txt"
