#!/usr/bin/python3
"""Send an SMS through commsgate from Python, with grpcio (Debian
python3-grpcio) and messages generated from commsgate's .proto:

    protoc --proto_path=proto --python_out=gen proto/commsgate/v1/messaging.proto
    COMMSGATE_PY=gen/commsgate/v1 ./send_sms.py 127.0.0.1:50051 +14155550100 "Hello"

(`make` already generates them into build/py/commsgate/v1.)"""
import os
import sys
import uuid

import grpc

sys.path.insert(0, os.environ.get("COMMSGATE_PY", "build/py/commsgate/v1"))
import messaging_pb2  # noqa: E402  (generated)


def main():
    if len(sys.argv) != 4:
        print("usage: send_sms.py HOST:PORT TO BODY", file=sys.stderr)
        return 2
    target, to, body = sys.argv[1:]
    with grpc.insecure_channel(target) as channel:
        send = channel.unary_unary(
            "/commsgate.v1.MessagingService/SendSMS",
            request_serializer=messaging_pb2.SendSMSRequest.SerializeToString,
            response_deserializer=messaging_pb2.SendSMSResponse.FromString)
        try:
            # An idempotency key makes a retry of this call safe.
            r = send(messaging_pb2.SendSMSRequest(to=to, body=body,
                                                  idempotency_key=str(uuid.uuid4())),
                     timeout=10, metadata=(("commsgate-caller", "python-example"),))
        except grpc.RpcError as e:
            twilio = dict(e.trailing_metadata() or ()).get("twilio-error-code")
            print("refused: %s: %s%s" % (e.code().name, e.details(),
                                         " (Twilio %s)" % twilio if twilio else ""),
                  file=sys.stderr)
            return 1
        print("sent %s (%s, %d segment(s))" % (r.sid, r.status, r.segments))
        return 0


if __name__ == "__main__":
    sys.exit(main())
