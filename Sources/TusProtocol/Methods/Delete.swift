import TusHTTP1

extension TusHandler {
    /// termination: `UploadService.cancel` in tus's words (204, changed by the pre-terminate hook's response).
    func handleDelete(_ request: TusRequest, id: String) {
        service.cancel(id, for: request.caller) { [self] cancelled in
            switch cancelled {
            case .failure(let error): fail(request, because: error)
            case .success(let hookResponse):
                var response = HTTPResponse(status: .noContent)
                response.apply(hookResponse)
                send(request, response)
            }
        }
    }
}
