// Embeddings as the openai Node SDK asks for them by default (base64, decoded by the SDK).
// Usage: node embeddings.cjs BASE_URL MODEL INPUT...; prints the vectors as JSON.
const OpenAI = require("openai");

async function main() {
  const [baseURL, model, ...input] = process.argv.slice(2);
  const client = new OpenAI({ baseURL, apiKey: "open", maxRetries: 0, timeout: 10000 });
  const answer = await client.embeddings.create({ model, input });
  console.log(JSON.stringify(answer.data.map((item) => item.embedding)));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
