"""REDIS_URL=redis-cluster://: commsgate on a real Redis Cluster (three
masters and three replicas, redis-server --cluster-enabled yes joined by
redis-cli --cluster create). Every RPC's and webhook's tests run again on
it, their keys spread over the masters; then a slot migrated under load
(redis-cli --cluster reshard, so MOVED and ASK) and a master killed."""
import unittest

import rpc_policy_test
import webhook_test


def on_cluster(cls):
    """cls's tests, on a Redis Cluster."""
    return type(cls.__name__ + "OnCluster", (cls,), {"CLUSTER": True})


SmsOnCluster = on_cluster(rpc_policy_test.SmsTest)
IdempotencyOnCluster = on_cluster(rpc_policy_test.IdempotencyTest)
WhatsAppOnCluster = on_cluster(rpc_policy_test.WhatsAppTest)
CallOnCluster = on_cluster(rpc_policy_test.CallTest)
VerifyOnCluster = on_cluster(rpc_policy_test.VerifyTest)
KeywordOnCluster = on_cluster(webhook_test.KeywordTest)
DeliveryOnCluster = on_cluster(webhook_test.DeliveryTest)

del rpc_policy_test, webhook_test  # so unittest finds only the cluster's

if __name__ == "__main__":
    unittest.main()
