-- One database per service (docker-compose runs this on first start of the postgres container).
CREATE DATABASE ingest;
CREATE DATABASE subscription;
CREATE DATABASE matching;
CREATE DATABASE delivery;
CREATE DATABASE ops;
