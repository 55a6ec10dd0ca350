# The demo's own MySQL user, with only the privileges the demo needs on its database.
#
# The mysql image's entrypoint sources this once, as root, on an empty data directory. It is not
# executable on purpose: sourced, it has the entrypoint's docker_process_sql (which logs in as root
# however root is set up) and docker_sql_escape_string_literal.
#
# SELECT, INSERT, UPDATE: reading, writing and the fencing row (SELECT ... FOR UPDATE needs UPDATE on
# MySQL 8). CREATE: only so that the program can make its two tables on first start; revoke it
# afterwards (REVOKE CREATE ON `weather`.* FROM 'weather_app'@'%') and the demo still runs.
if [ -n "${MYSQL_APP_USER:-}" ] && [ -n "${MYSQL_APP_PASSWORD:-}" ] && [ -n "${MYSQL_DATABASE:-}" ]; then
	app_password="$(docker_sql_escape_string_literal "${MYSQL_APP_PASSWORD}")"
	docker_process_sql --database=mysql <<-EOSQL
		CREATE USER IF NOT EXISTS '${MYSQL_APP_USER}'@'%' IDENTIFIED BY '${app_password}';
		GRANT SELECT, INSERT, UPDATE, CREATE ON \`${MYSQL_DATABASE}\`.* TO '${MYSQL_APP_USER}'@'%';
	EOSQL
	unset app_password
fi
