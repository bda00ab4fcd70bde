# Dockerfile - Tandem's images, all on Debian 12 (bookworm) and its packages.
#
#   build    (debian:12) compiler and -dev packages; runs make for the three
#            binaries. Not shipped.
#   runtime  (debian:12-slim) the default target: bin/command-service,
#            bin/query-service and bin/migrate in /opt/tandem/bin, the
#            migrations in /opt/tandem/migrations (where bin/migrate looks
#            by default: ../migrations beside the binary), the three
#            runtime libraries, user tandem (uid 10001). One image for all
#            three: the command picks the binary, e.g.
#              docker run --rm -e DATABASE_URL=... tandem query-service
#   gateway  (debian:12-slim + Debian's nginx) the gateway of
#            docker-compose.yml with deploy/gateway/ copied in, as uid 10001
#            on port 8080.
#
# docker-compose.yml builds both; by hand:
#   docker build -t tandem .
#   docker build -t tandem-gateway --target gateway .
#
# The HEALTHCHECK of both images is deploy/healthcheck: a GET on loopback
# in plain bash, healthy on 200 (no curl in the images).

FROM debian:12 AS build
RUN apt-get update \
	&& apt-get install -y --no-install-recommends \
		build-essential pkg-config \
		libmicrohttpd-dev libjansson-dev libpq-dev libssl-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
# What make needs for the binaries: VERSION (TANDEM_VERSION) and the
# migrations (TANDEM_SCHEMA_LATEST, the newest file name) besides the code.
COPY Makefile VERSION ./
COPY migrations/ migrations/
COPY common/ common/
COPY command-service/ command-service/
COPY query-service/ query-service/
# (tools/ holds other things too, such as node packages for the OpenAPI lint)
COPY tools/*.c tools/
RUN make -j"$(nproc)" bin/command-service bin/query-service bin/migrate

FROM debian:12-slim AS gateway
# Debian's nginx (what nginx-light adds to it, the echo module, the gateway
# does not use).
RUN apt-get update \
	&& apt-get install -y --no-install-recommends nginx \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 tandem \
	&& useradd --system --uid 10001 --gid 10001 --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin tandem \
	&& install -d -o 10001 -g 10001 -m 0750 /var/lib/tandem-gateway
COPY deploy/gateway/nginx.conf deploy/gateway/routes.conf \
	deploy/gateway/gateway-listen.conf /etc/tandem-gateway/
COPY deploy/healthcheck /usr/local/bin/tandem-healthcheck
USER 10001:10001
EXPOSE 8080
# Healthy when a GET reaches a query replica through the gateway.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
	CMD ["bash", "/usr/local/bin/tandem-healthcheck", "--port", "8080", "/health"]
# SIGQUIT: finish the requests in flight (long polls included), then exit.
STOPSIGNAL SIGQUIT
# -p: pid file and temp folders in /var/lib/tandem-gateway; -e: the error
# log before the configuration is read (stderr, not /var/log/nginx).
CMD ["nginx", "-p", "/var/lib/tandem-gateway/", \
	"-c", "/etc/tandem-gateway/nginx.conf", "-e", "stderr"]

FROM debian:12-slim AS runtime
# Only the libraries the binaries link (and what those packages pull in);
# tests/integration/t0040-deploy.sh checks this list against ldd (libssl3,
# for libcrypto, comes with libpq5).
RUN apt-get update \
	&& apt-get install -y --no-install-recommends \
		libmicrohttpd12 libjansson4 libpq5 \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 tandem \
	&& useradd --system --uid 10001 --gid 10001 --no-create-home \
		--home-dir /nonexistent --shell /usr/sbin/nologin tandem
COPY --from=build /src/bin/command-service /src/bin/query-service \
	/src/bin/migrate /opt/tandem/bin/
COPY migrations/ /opt/tandem/migrations/
COPY deploy/healthcheck /usr/local/bin/tandem-healthcheck
ENV PATH=/opt/tandem/bin:$PATH
USER 10001:10001
WORKDIR /opt/tandem
EXPOSE 8081 8082
# GET /ready on $PORT (else the binary's default port): 200 when the
# database is reachable and the schema current.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
	CMD ["bash", "/usr/local/bin/tandem-healthcheck", "/ready"]
CMD ["command-service"]
