"""What earlier versions of the demo left in a database, for the tests of the upgrades."""

# The weather table as versions before the provider column made it (store.py then).
OLD_WEATHER_TABLE = """CREATE TABLE weather (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    city VARCHAR(100) NOT NULL,
    temperature DOUBLE NOT NULL,
    humidity TINYINT UNSIGNED NOT NULL,
    description VARCHAR(255) NOT NULL,
    observed_at DATETIME NOT NULL,
    leader_id VARCHAR(64) NOT NULL,
    term BIGINT UNSIGNED NOT NULL,
    stored_at DATETIME(6) NOT NULL,
    UNIQUE KEY one_observation (city, observed_at),
    KEY newest (city, observed_at)
) ENGINE=InnoDB"""
