"""The demo-data generator (`ostap generate`, generate.py): the ODS replicas of every source entity.

cdc      the replica machinery: source state, operations, ods_seq, late rows, re-deliveries
credit   clients, applications, contracts
retail   stores, sales
leasing  premises, tenants, managers, deals, proposals, page_views (and the hidden model)
"""
