# The one user the app logs in as, with the password the postgres service was given.
printf '"%s" "%s"\n' "${POSTGRES_USER:-postgres}" "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/userlist.txt
exec /usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini
