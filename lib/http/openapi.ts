import { createDocument, type ZodOpenApiPathsObject } from "zod-openapi";
import type { Route } from "./route.ts";
import { errorSchema } from "../schemas.ts";

const errorResponse = (description: string) => ({ description, content: { "application/json": { schema: errorSchema } } });
const NOT_ADMIN = "Authenticated, but not an admin";
const NOT_ADMIN_OR_FOREIGN_ORIGIN = `${NOT_ADMIN}; or signed in by the session cookie from an untrusted origin (CSRF_ORIGIN_REFUSED)`;

const SECURITY: Record<Route["access"], { [name: string]: string[] }[]> = {
  admin: [{ adminBearer: [] }, { adminCookie: [] }],
  device: [{ deviceBearer: [] }],
  public: [],
};

/** OpenAPI 3.1 built from the same route list and zod schemas the router validates with. */
export function buildOpenApiDocument(routes: Route[], serverUrl?: string) {
  const paths: ZodOpenApiPathsObject = {};
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, "{$1}");
    const { params, query, body, rawBody } = route.request ?? {};
    const operation = {
      summary: route.summary,
      description: route.description,
      tags: route.tags,
      security: SECURITY[route.access],
      // zod-openapi reads every key given here, so an absent schema must be an absent key.
      requestParams: { ...(params && { path: params as never }), ...(query && { query: query as never }) },
      requestBody: body
        ? { required: true, content: { "application/json": { schema: body } } }
        : rawBody
          ? { required: true, ...rawBody }
          : undefined,
      responses: {
        ...route.responses,
        ...(body || query ? { 400: errorResponse("Invalid input (VALIDATION_FAILED)") } : {}),
        ...(route.access !== "public" ? { 401: errorResponse("Missing or invalid credentials") } : {}),
        ...(route.access === "admin" ? { 403: errorResponse(route.method === "GET" ? NOT_ADMIN : NOT_ADMIN_OR_FOREIGN_ORIGIN) } : {}),
        ...(params ? { 404: errorResponse("No such resource") } : {}),
        default: errorResponse("Any other error, in the error envelope"),
      },
    };
    paths[path] = { ...paths[path], [route.method.toLowerCase()]: operation };
  }
  return createDocument({
    openapi: "3.1.0",
    info: {
      title: "IoT Support Backend",
      version: "1.0.0",
      description: "Admin API (`/api`), device API (`/iot`, also under `/api/iot`) and operations endpoints.",
    },
    servers: serverUrl ? [{ url: serverUrl }] : undefined,
    components: {
      securitySchemes: {
        adminBearer: { type: "http", scheme: "bearer", description: "An admin's access token, or ADMIN_API_TOKEN" },
        adminCookie: {
          type: "apiKey",
          in: "cookie",
          name: "iot_access_token",
          description: "Set by /api/auth/login. A change (POST, PUT, DELETE) signed in by it must carry the web UI's Origin (BASEURL's or one of CSRF_TRUSTED_ORIGINS)",
        },
        deviceBearer: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "A device's client-credentials token" },
      },
    },
    paths,
  });
}
