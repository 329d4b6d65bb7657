"""The Postgres store: models, migrations, named queries and the repositories over them."""
