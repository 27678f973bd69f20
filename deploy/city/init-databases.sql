-- One database per district backend, owned by the service's role.
CREATE ROLE relief LOGIN;
CREATE DATABASE relief_a OWNER relief;
CREATE DATABASE relief_b OWNER relief;
