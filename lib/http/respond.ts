import { AppError } from "./errors.ts";

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

export const noContent = () => new Response(null, { status: 204 });

/** The one place an error becomes a response (CONTRACT §1 envelope). Unknown errors never leak their text. */
export function errorResponse(error: unknown, requestId: string): Response {
  const known = error instanceof AppError ? error : null;
  const status = known?.status ?? 500;
  return json(
    {
      error: known?.message ?? "Something went wrong on our side. The error was logged.",
      code: known?.code ?? "INTERNAL_ERROR",
      details: known?.details ?? null,
      correlationId: requestId,
    },
    status,
    known?.headers ?? {},
  );
}
