/** CloudEvents the tests post, written once. */

/** A binary-mode CloudEvent with a time to the microsecond and an offset, a traceparent, an extension and a dataschema. */
export function tracedPaymentHeaders(id: string): Record<string, string> {
  return {
    'ce-specversion': '1.0',
    'ce-id': id,
    'ce-type': 'payment.settled',
    'ce-source': 'urn:bank',
    'ce-time': '2026-02-03T10:00:00.123456+02:00',
    'ce-traceparent': TRACED_PAYMENT_ATTRIBUTES.traceparent,
    'ce-tenant': TRACED_PAYMENT_ATTRIBUTES.tenant,
    'ce-dataschema': TRACED_PAYMENT_ATTRIBUTES.dataschema,
  };
}

/** What those headers leave in the entry's and the document's attributes. */
export const TRACED_PAYMENT_ATTRIBUTES = {
  datacontenttype: 'application/json',
  dataschema: 'https://schemas.example/payment/v2',
  tenant: 'acme',
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
};
