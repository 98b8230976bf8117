# A CoAP device for compose.yaml: libcoap's example server (Debian's libcoap3-bin), /time and friends on
# UDP 5683. Built by `make docker` as coapgw-device:latest.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcoap3-bin \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log
USER 65534:65534
EXPOSE 5683/udp
ENTRYPOINT ["coap-server-notls"]
CMD ["-A", "0.0.0.0", "-p", "5683"]
