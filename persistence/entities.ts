/**
 * Reference data, as the simulations seed it: securities, accounts and block
 * orders with their allocation targets. Actors read it once, on their first
 * message, and journal what they read, so replays never depend on it again.
 */
import { defineEntity, p } from '@mikro-orm/core';

export const Security = defineEntity({
  name: 'Security',
  tableName: 'securities',
  properties: {
    id: p.string().primary(),
    ticker: p.string(),
    lotSize: p.bigint('bigint').fieldName('lot_size'),
  },
});

export const Account = defineEntity({
  name: 'Account',
  tableName: 'accounts',
  properties: {
    id: p.string().primary(),
    name: p.string(),
    openingCashMinor: p.bigint('bigint').fieldName('opening_cash_minor'),
  },
});

export const AccountPosition = defineEntity({
  name: 'AccountPosition',
  tableName: 'account_positions',
  properties: {
    accountId: p.string().primary().fieldName('account_id'),
    securityId: p.string().primary().fieldName('security_id'),
    openingQuantity: p.bigint('bigint').fieldName('opening_quantity'),
  },
});

export const BlockOrder = defineEntity({
  name: 'BlockOrder',
  tableName: 'block_orders',
  properties: {
    id: p.string().primary(),
    securityId: p.string().fieldName('security_id'),
    side: p.string(),
    tradeDate: p.string().fieldName('trade_date'),
    allocationPolicy: p.string().fieldName('allocation_policy').default('PRO_RATA'),
    releaseEveryFills: p.integer().fieldName('release_every_fills').nullable(),
    releaseEveryMarketMs: p.bigint('number').fieldName('release_every_market_ms').nullable(),
  },
});

export const BlockOrderTarget = defineEntity({
  name: 'BlockOrderTarget',
  tableName: 'block_order_targets',
  properties: {
    blockOrderId: p.string().primary().fieldName('block_order_id'),
    accountId: p.string().primary().fieldName('account_id'),
    quantity: p.bigint('bigint'),
  },
});

export const entities = [Security, Account, AccountPosition, BlockOrder, BlockOrderTarget];
