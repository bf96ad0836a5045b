# commsgate container: Debian 12 build stage, slim runtime stage.
# Both stages install from deploy/debian-packages.txt through scripts/deps.sh,
# the same list `make deps` and CI read.

FROM debian:bookworm AS build
WORKDIR /src
COPY deploy/debian-packages.txt deploy/debian-packages.txt
COPY scripts/deps.sh scripts/deps.sh
RUN sh scripts/deps.sh build
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j "$(nproc)" --target commsgate twilio-sim commsctl

FROM debian:bookworm-slim AS runtime
COPY deploy/debian-packages.txt /tmp/deploy/debian-packages.txt
COPY scripts/deps.sh /tmp/scripts/deps.sh
RUN sh /tmp/scripts/deps.sh runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/deploy /tmp/scripts \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin commsgate
COPY --from=build /build/bin/commsgate /build/bin/twilio-sim /build/bin/commsctl /usr/local/bin/
USER 10001:10001
# The admin listener (/metrics, probes) on the container's network, as a
# scraper needs it; publish only 50051 and 8080 beyond the host or pod.
ENV COMMSGATE_GRPC_ADDR=0.0.0.0:50051 COMMSGATE_HTTP_ADDR=0.0.0.0:8080 \
    COMMSGATE_ADMIN_ADDR=0.0.0.0:8081
# Debian's libcurl loads GnuTLS (through libldap and librtmp) though it uses
# OpenSSL; GnuTLS initialises itself on load, which costs 1 MB of RSS.
# commsgate never calls it, so skip that (see docs/PERFORMANCE.md).
ENV GNUTLS_NO_IMPLICIT_INIT=1
EXPOSE 50051 8080 8081
# GET /healthz without curl in the image: bash's /dev/tcp. Kubernetes should
# use its native gRPC probe on grpc.health.v1 instead.
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s \
  CMD bash -c 'exec 3<>/dev/tcp/127.0.0.1/${COMMSGATE_ADMIN_ADDR##*:} && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && grep -q "200" <&3' || exit 1
ENTRYPOINT ["/usr/local/bin/commsgate"]
