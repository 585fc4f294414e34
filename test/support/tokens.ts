/** The static admin token every test app and every fake authenticator accepts. */
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";
