"""The agent's hash rings, pure: members and registrations in, ring views and changes out.

The API edge is `controlplane.api.ring`; the hashing itself is `controlplane.ring`
(shipped with the client).
"""
