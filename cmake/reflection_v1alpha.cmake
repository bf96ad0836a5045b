# grpc.reflection.v1alpha is v1's messages and service under the older
# package name (clients ask for one, then the other): made from v1's file.
# -DIN=<v1/reflection.proto> -DOUT=<v1alpha/reflection.proto>
file(READ ${IN} text)
string(REPLACE "package grpc.reflection.v1;" "package grpc.reflection.v1alpha;" text "${text}")
string(REPLACE "gRPC server reflection (v1)" "gRPC server reflection (v1alpha, made from v1 at build time)" text "${text}")
file(WRITE ${OUT}.tmp "${text}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
