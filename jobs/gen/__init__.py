"""Per-domain generators of the demo sources (see jobs.generate for the entry point).

cdc      the replica machinery: source state, operations, ods_seq, late rows, re-deliveries
credit   clients, applications, contracts
retail   stores, sales
leasing  premises, tenants, managers, deals, proposals, page_views (and the hidden model)
"""
