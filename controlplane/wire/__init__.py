"""The agents' internal wire format (gossip, election, push-pull), generated from
protos/controlplane/gossip/v1: the proto package stays `controlplane.gossip.v1`.
"""
